"""The core layer: what every lab section stands on.

Settings (config), errors, data sources and loaders (data), models (model,
mobilenet), optimisers and schedules (optim), the only clocks (timing), the
one training loop and run set-up (train), the run store (runs), provenance and
the repository's paths (paths); what the machine offers: the torch build its
driver runs (wheels), the preflight (preflight) and the parts switched off
(switches). Modules here import only each other: nothing
in the core knows about a lab section, a notebook or the report.
"""

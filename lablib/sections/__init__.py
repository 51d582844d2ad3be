"""The sections layer: what each lab section presents, and the measurements it asks the core for.

    registry     Presenter and Needs: each section's planner (the measurements it needs from its
                 parameters and what is recorded) and its one-line answers, registered by its module
    setup        every notebook's preamble: section = setup(globals(), name); measured / reused notes
    training     C1-C2;  workers  C3 (the stop rule or a fixed sweep) and P-2025-C4;  devices  C4
    optimizers   C5-C6;  torchscript  C7-C9;  latency  C10;  questions  Q1-Q6;  libtorch  XC-2026
    compiled     P-2025-C8;  profiling  P-2025-XC;  fast  X-FAST
    hparams      E1's grids, with halving (successive halving within a budget) and factors (per factor)
    efficiency   E2, with speed (compile, precision, busy fraction sentences)
    points       measurements as table rows;  tables  tables and counts that read well
    headlines    each question's one-line answer with its key figure and spread
    context      this build's figures beside published ones, the same quantity and scope
    parameters   papermill's injected parameters checked against the declared ones

Sections hold no measuring code: every number comes from a measurement of lablib.core.store, and a
section's modules are not in any measurement's key, so changing a sentence re-presents and never
re-measures. A notebook imports from here and from the core only; every sentence of the report is a
function here, with its thresholds, and is unit-tested. Imports point down only: sections may use the
core, never the report layer.
"""

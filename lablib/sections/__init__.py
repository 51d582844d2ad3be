"""The sections layer: what each lab section computes and the sentences it writes.

One module per section or family of sections (analysis: C1-C6 and P-2025-C4;
inference: C7-C10; introspect: Q1-Q6; libtorch: XC-2026; compiled: P-2025-C8;
profiling: P-2025-XC; hparams: E1; efficiency: E2; fast: X-FAST), plus sweeps
(points across executions, C3's rule), setup (every notebook's preamble) and
parameters (papermill's injected parameters checked against the declared ones).
A notebook imports from here and from the core only. Every sentence of the
report is a function here, with its thresholds, and is unit-tested.
Imports point down only: sections may use the core, never the report layer.
"""

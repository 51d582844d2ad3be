"""The report layer: from report/plan.yaml to report.html and report.pdf.

plan (the plan file), points (point keys and the store of point.json files),
job (one papermill execution into a run folder), executors (where jobs run:
here one or N at a time, or as Slurm job arrays), build (resolve, estimate,
schedule and show progress of one `make report`) and stitch (one notebook from
the executed ones, exported to HTML and PDF). It may import the sections and
the core; nothing below imports it, so it is outside every point's key: a
change here re-stitches the report but never re-runs a measurement.
"""

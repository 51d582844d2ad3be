"""The report layer: from report/plan.yaml to report.html and report.pdf.

    plan       the plan file, checked (sections, profiles, sweeps and their rules)
    points     a point's key and the store of point.json files
    job        one papermill execution into a point's folder
    executors  where jobs run: here one or N at a time, or as Slurm job arrays
    resolve    every point of the plan with its parameters, key and state (queries only)
    estimate   how long the stale points will take
    schedule   which points run, grouped for the executor, in plan order
    progress   the line per point with its time and the ETA
    stitch     one notebook from the executed ones, exported to HTML and PDF
    records    run records carried between machines (a GPU node's tarball), and their summary
    build      one `make report`: the steps above in order

It may import the sections and the core; nothing below imports it, so it is
outside every point's key: a change here re-stitches the report but never
re-runs a measurement.
"""

"""The report layer: from report/plan.yaml to report.html and report.pdf.

    plan       the plan file, checked (sections, their parameters, what they need, profiles)
    variants   the lab variants (report/variants.yaml): numbering, order and questions per year
    resolve    every section's parameters, the measurements it presents, its point's key and state
    estimate   what measurements cost here and on named GPUs; the dry run's predicted measurements
    measure    the first phase: every missing measurement once, in rounds, as measuring jobs
    points     a point's key (the presenting code it imports) and the store of point.json files
    job        one job: a papermill execution into a point's folder, or a measuring job
    executors  where jobs run: here one or N at a time, or as Slurm job arrays
    progress   the line per job with its time and the ETA
    latex      presented tables as LaTeX
    appendix   answers at a glance, context, reuse notes, settings and changes around the sections
    stitch     one notebook from the executed ones, exported to HTML and PDF
    records    run records carried from a GPU node (a tarball), and their summary
    build      one `make report`: select, plan, measure, present, stitch; the exit status

It may import the sections and the core; nothing below imports it, so it is outside every
measurement's and point's key: a change here re-stitches the report but never re-runs anything.
"""

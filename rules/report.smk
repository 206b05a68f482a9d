rule summarize:
    input:
        bench=bench_cells(),
        records=evaluation_records(),
    output:
        summary="results/summary.csv",
    log:
        "logs/summarize/summary.log",
    conda:
        ENV
    params:
        results=results_dir,
    script:
        "../scripts/summarize.py"


rule report:
    input:
        summary="results/summary.csv",
    output:
        report="results/report.md",
    log:
        "logs/report/report.log",
    conda:
        ENV
    params:
        config_text=config_as_yaml(),
    script:
        "../scripts/report.py"

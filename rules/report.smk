rule summarize:
    input:
        bench=bench_cells(),
        records=evaluation_records(),
    output:
        summary="results/summary.csv",
    params:
        results="results",
    log:
        "logs/summarize/summary.log",
    conda:
        ENV
    script:
        "../scripts/summarize.py"


rule report:
    input:
        summary="results/summary.csv",
    output:
        report="results/report.md",
    params:
        config_text=config_as_yaml(),
    log:
        "logs/report/report.log",
    conda:
        ENV
    script:
        "../scripts/report.py"

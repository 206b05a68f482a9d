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
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        results=results_dir,
    script:
        "../scripts/summarize.py"


rule report:
    input:
        summary="results/summary.csv",
        zoo=zoo_parity_records(),
        exports=expand("results/{model}/export.json", model=MODELS),
        detections=expand("results/{model}/parity/fp32.json", model=DETECTION_MODELS),
    output:
        report="results/report.md",
    log:
        "logs/report/report.log",
    conda:
        ENV
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        config_text=config_as_yaml(),
    script:
        "../scripts/report.py"

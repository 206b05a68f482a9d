# Sentence encoders (hf: sources) are exported with dynamic batch and sequence axes, and
# checked and scored as sentence embeddings of the shipped sentences and pairs. Their samples,
# weights, fp16 and int8dyn variants and benchmarks come from the rules every model uses.


rule export_text:
    input:
        weights="results/{model}/weights.pt",
    output:
        onnx="results/{model}/fp32.onnx",
        record="results/{model}/export.json",
        test_data=directory("results/{model}/test_data_set_0"),
    log:
        "logs/export_text/{model}.log",
    wildcard_constraints:
        model=model_pattern(TEXT_MODELS),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        settings=model_settings("opset"),
    script:
        "../scripts/text_export.py"


# PyTorch's embeddings and pair similarities, and fp32's pair similarities: the baseline of
# every variant's accuracy (Spearman of pair similarities against fp32).
rule text_reference:
    input:
        weights="results/{model}/weights.pt",
        fp32="results/{model}/fp32.onnx",
    output:
        reference="results/{model}/reference.npz",
        accuracy="results/{model}/accuracy/torch.json",
    log:
        "logs/text_reference/{model}.log",
    wildcard_constraints:
        model=model_pattern(TEXT_MODELS),
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        settings=model_settings("evaluation_samples"),
    script:
        "../scripts/text_reference.py"


rule text_evaluate:
    input:
        onnx="results/{model}/{onnx_variant}.onnx",
        reference="results/{model}/reference.npz",
    output:
        parity="results/{model}/parity/{onnx_variant}.json",
        accuracy="results/{model}/accuracy/{onnx_variant}.json",
    log:
        "logs/text_evaluate/{model}_{onnx_variant}.log",
    wildcard_constraints:
        model=model_pattern(TEXT_MODELS),
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        tolerance=parity_tolerance,
    script:
        "../scripts/text_evaluate.py"


# Dynamic int8 with 8-bit weights in blocks of 32 (MatMulNBits): closer to fp32 than int8dyn's
# per-channel weights on these encoders, and about as fast as fp32 on x86 CPUs.
rule int8dyn_block:
    input:
        onnx="results/{model}/fp32.onnx",
    output:
        onnx="results/{model}/int8dyn_block.onnx",
        record="results/{model}/int8dyn_block.json",
    log:
        "logs/int8dyn_block/{model}.log",
    wildcard_constraints:
        model=model_pattern(TEXT_MODELS),
    conda:
        ENV
    resources:
        mem_mb=2000,
        runtime=15,
    script:
        "../scripts/int8dyn_block.py"

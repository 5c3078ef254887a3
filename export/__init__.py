"""The fourth stage: a fitted model -> version N of the Triton model repository.

`export.build` (`python -m export.build`, `make export`) runs the stages in order: `export.source`
(load and check the model), `export.onnx_graph` (ONNX), `export.onnx_optimise` (fusion, int8),
`export.gates` (parity and the int8 F1 gate), `export.repository` (the version written, rolled
back) with the configs from `export.triton_configs`; `export.model_store` pushes and pulls
versions; `export.first_start` is `make serve`'s first step (fit, score and export one model).
"""

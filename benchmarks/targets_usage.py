"""The prose of docs/targets.md after the matrix: how to export to, install and run each target, and what was
measured about it. Rendered by ``benchmarks/targets.py``; kept apart from the code that measures."""

USAGE = """
## Using each target

Every target is converted from the verified FP32 ONNX (ncnn: from the model, see its section) by `rtdetr-export`
and checked against ONNX Runtime on the export's verification images before anything is written (FP32 engines: each
decided top-20 detection found again with its score within 1e-3 and its box within 1 px; RKNN FP16: 0.1 and 4 px).
Beside each engine file lies a `.json` sidecar with the model's metadata (input size, classes, preprocessing; in
the `.ncnn` folder, `model.json`); `rtdetr-infer`, `rtdetr-bench` and `rtdetr-eval` pick the backend by the file's
suffix. Export fixed batch 1 (the default).

### MNN (`.mnn`, backend `mnn`)
```
pip install 'rtdetr-deploy[mnn]'
rtdetr-export best.pth --mnn                 # best.onnx, best.mnn, best.mnn.json
rtdetr-infer images/ --model best.mnn
```
MNN's own converter command imports a usage-logging module that runs `pip install -U aliyun-log-python-sdk`
through the first `pip` on PATH and sends a record of each conversion over the network. The exporter never
imports it: it calls the compiled converter underneath in a child interpreter whose PATH holds no `pip` and
whose pip may reach no index, so an export changes nothing in your environment (tested).

### LiteRT / TensorFlow Lite (`.tflite`, backend `litert`)
```
python3 -m venv /opt/onnx2tf && /opt/onnx2tf/bin/pip install onnx2tf tensorflow tf-keras onnx-graphsurgeon \\
    sng4onnx onnxsim ai-edge-litert psutil 'numpy<2'
pip install 'rtdetr-deploy[litert]'          # the runtime (ai-edge-litert) in the project's environment
rtdetr-export best.pth --tflite --tflite-python /opt/onnx2tf/bin/python    # or RTDETR_ONNX2TF_PYTHON
```
onnx2tf pins TensorFlow, so it runs in an interpreter of its own. `Erf` (exact GELU) is replaced by onnx2tf's
approximation (`-rtpo Erf`) so that the file needs no Flex delegate. The matrix shows whether the result is
correct; an export whose LiteRT detections differ from ONNX Runtime's fails and writes nothing.

What made the converted file correct (onnx2tf 1.28.8, TensorFlow 2.19): onnx2tf guesses each tensor's layout, and
two patterns of the earlier graph fooled it, so the file ran and none of its detections was right. Both are now
the exported graph for every target (see [the portable graph](portable-graph.md)): self-attention is traced
batch-first instead of through `nn.MultiheadAttention`'s sequence-first transposes, and the decoder joins its
levels channel-first and transposes once, so no square `[B, H*W, D]` transpose appears where a level has as many
pixels as channels. Found with onnx2tf's own per-node comparison against ONNX Runtime (`-cotof`): after the two
changes every one of its 512 compared tensors matches. Before conversion the exporter still turns the anchor
mask's `Where(mask, x, 0)` back into `Mul(x, mask)` (onnx2tf fails on that `Where`).

Bilinear graphs (`GridSample`) still convert wrongly with trained weights (see the matrix: the tiny finds 39% of
the detections again, AP 0.637 against 0.738; the trained R18 1%, AP 0.025 against 0.569), although the R18 with
random weights, whose sampling offsets stay near zero, once agreed; the `GridSample` translation was not traced
further, and `rtdetr-export --tflite` refuses such a file (its check against ONNX Runtime fails).
The default discrete graph is the one to use for LiteRT: it has no `GridSample` for onnx2tf to translate.

### RKNN (`.rknn`, backend `rknn`, Rockchip NPUs)
```
python3.11 -m venv /opt/rknn && /opt/rknn/bin/pip install rknn-toolkit2==2.5.0     # pins old onnx/numpy/torch
rtdetr-export best.pth --rknn rk3588 --rknn-python /opt/rknn/bin/python            # or RTDETR_RKNN_PYTHON
rtdetr-export best.pth --rknn rk3588 --rknn-precision int8 --calib images/ --rknn-python /opt/rknn/bin/python
```
The conversion runs `rtdetr_deploy/export/rknn_driver.py` in the toolkit's interpreter (never imported into
ours) and verifies the file in rknn-toolkit2's x86 simulator. On the board, the `rknn` backend runs the file
through rknn-toolkit-lite2 (`pip install rknn-toolkit-lite2` on the board); **that backend is untested here**:
the project's machines are x86 without an NPU.

FP16 moves the discrete sampling locations. In the matrix, the discrete fine-tune of the tiny on rk3588 FP16 finds
all of PyTorch's 80 decided top-20 detections with boxes within 1.8 px and keeps its AP (-0.0001), but one score
moves by 0.18 (> 0.1), so `rtdetr-export tiny_synthetic_discrete.pth --rknn rk3588` refuses the file; the trained
R18's discrete file: 99%, scores 0.46, boxes 4.7 px, AP -0.005. The bilinear-trained tiny exported with discrete
sampling (AP 0.20, the earlier matrix rows): 95%, 0.038, 5.1 px. Bilinear files pass (tiny: 0.014, 0.48 px, AP
+0.0012; R18: 0.006, 0.6 px, AP +0.0008).

These differences come from how sharply the trained checkpoints react to a sampling location crossing a rounding
boundary, not from an engine fault, measured with `python -m benchmarks.discrete_conditioning
tiny_synthetic_discrete.pth runs/r18_reference/discrete/best.pth` (`benchmarks/results/discrete_conditioning.md`):
in PyTorch, every location moved by +-1e-5 (image units) changes 6 of the tiny's 25,600 gathered pixels on the 4
verification scenes and moves a decided score by 0.18 with boxes 1.2 px: the RKNN figures. For the trained R18,
+-1e-6 changes 11 of 345,600 pixels and moves a score by 4.9e-3 with boxes 0.31 px, which is exactly what MNN
(FP32) shows for it in the matrix (5.1e-3, 0.31 px): MNN computes the locations in another float order, so
`rtdetr-export best.pth --mnn` of the trained discrete R18 is refused by the FP32 rule (1e-3) although its AP is
ONNX Runtime's to 1e-5. A fixed score tolerance cannot judge a discrete graph on every checkpoint; the bilinear
graphs, where sampling is continuous, keep the tight rules.
The tiny's largest level has 32 x 32 = 1,024 pixels, so its flat index
was exact in FP16 before it became integer arithmetic: these figures did not change with it.
There is no higher-precision path for those locations in rknn-toolkit2 2.5.0 (measured with the toolkit's debug
log and one build per setting on the discrete tiny): of its `float_dtype` values, `tfloat32` stops the rk3588
build ("Can not support request type") and `bfloat16` holds fewer mantissa bits than FP16; the ops the toolkit
places on the CPU (the index's `Floor` and `Cast`) run in FP16 too; `op_target`, which would move ops between NPU and
CPU, refused every key tried (ONNX node names, output names and `Type:name`, also for a plain encoder `Conv`), so
the index arithmetic cannot even be moved; `w16a16i_dfp` (16-bit integer activations) stops the build on rk3588
with unsupported tensor types and `w8a16` is not offered for rk3588. Held in FP16, the sampling locations alone
move 0.6 % of the sampling points to the neighbouring pixel (0.9 % at the 32 x 32 level; FP32 locations rounded
to FP16 in PyTorch on the four photographs; the trained tiny, its discrete fine-tune and the trained R18 alike),
before any FP16 error upstream of them; the box differences above are what that costs the trained tiny.

RKNN INT8 (w8a8, `--rknn-precision int8 --calib DIR`, 50 synthetic training images) of the bilinear tiny builds
and runs in the simulator but is unusable: it finds none of ONNX Runtime's 80 decided top-20 detections on the
verification images and its AP on the synthetic validation split is 0.035 against 0.738. Two faults, measured: the
`orig_target_sizes` input is quantized too, so boxes come back about 0.65 times their size (sizes outside the
calibration's range clip); with that input held at the model's input size and the boxes scaled on the host, AP is
still 0.034, so the w8a8 quantization of the transformer itself loses the detections. Until now the export waved
INT8 engine files through unjudged; they are now judged by the INT8 rules and this one is refused (exit 1, nothing
written). A usable RKNN INT8 would need the toolkit's hybrid quantization (sensitive layers kept in FP16); not built.

Official-layout R18 with random weights at 640 (not in the matrix above; asking for r18 adds it), measured
with `rtdetr-export r18vd_random.pth --rknn rk3588 --rknn-python ...` on the same machine: the FP16 file builds,
runs in the simulator and agrees with ONNX Runtime (the whole export 156 s on the loaded machine, of which 50 s the
build and the simulator run of the 4 verification scenes, 1.4 to 2.4 s per scene). Its random heads give flat
scores (the top-20 within 1e-4 of each other), so no detection is decided: the sorted top-20 scores agree within
6.5e-5, and the ONNX Runtime top-20 detections found again among the simulator's (same label, IoU >= 0.9; 1 to 5
per scene) within 1e-4 in score and 0.5 px. The earlier simulator failure, `GatherElements` out of range in the
first decoder layer, came from the flat index `y * W + x` computed in float: FP16 holds whole numbers exactly only
up to 2,048, the largest level has 80 x 80 = 6,400 pixels, and the last pixel's index 6,399 rounds to 6,400, past
the end of the map. The flat index is now int64 arithmetic. Checked with the R18 whose sampling offsets send every
location into the bottom-right corner: the graph with the float flat index fails in the simulator (`GatherElements`
in `layers.0/cross_attn`), the current graph builds, runs and agrees. A random checkpoint whose locations never
reach the last pixels ran with the float index too, so it does not show the fault.
"""


NCNN = """
### ncnn (`.ncnn` folder, backend `ncnn`)
```
python3 -m venv /opt/pnnx && /opt/pnnx/bin/pip install pnnx     # ncnn's converter, with a torch of its own
pip install 'rtdetr-deploy[ncnn]'            # the runtime (ncnn) in the project's environment
rtdetr-export best.pth --sampling bilinear --ncnn --ncnn-python /opt/pnnx/bin/python   # or RTDETR_NCNN_PYTHON
rtdetr-infer images/ --model best.ncnn
```
ncnn has no TopK or GatherElements layer, so the published ONNX does not convert. `--ncnn` traces the model again
as two graphs around its query selection and converts each with pnnx (run in its own interpreter): the encoder
(`images` -> memory, output memory and each position's best class logit) and the decoder (the selected queries,
their anchors and the memory -> raw logits and cxcywh boxes). The `ncnn` backend runs the encoder, selects the
queries on the host in numpy, runs the decoder and takes the top-k on the host, as for an `--outputs raw` graph.
`best.ncnn/` holds both graphs (`.param`/`.bin`), the anchors (`anchors.npy`) and the sidecar (`model.json`).
The decoder's deformable attention is rewritten per head (one `GridSample` per head and level, no tensor above
rank 4, the weighted sum as a MatMul) because pnnx maps the model's form wrongly for ncnn; the export fails if
pnnx leaves an operator unconverted or writes a `Reduction` over no axis (its form of a `ReduceSum`, which ncnn
computes as a copy). Bilinear sampling only: the discrete sampling gathers with `GatherElements`, so `--ncnn`
without `--sampling bilinear` is refused (the discrete rows above say "not applicable"). The backend runs FP32
(ncnn's FP16/BF16 paths off) with ncnn's default thread count, batch 1.
"""

"""Build an ``.rknn`` with rknn-toolkit2 and run it in the toolkit's x86 simulator: a script, never imported.

rknn-toolkit2 pins old onnx, numpy and torch, so it lives in an interpreter of its own; ``export.rknn`` runs this
file there as ``python rknn_driver.py JOB.json``. It imports nothing of rtdetr-deploy (that interpreter does not
have it) and only the standard library, numpy and ``rknn.api``. The job names the ONNX, the target platform, the
precision (``fp16``; ``int8`` with a dataset list of ``.npy`` inputs), the verification inputs (an ``.npz`` of
``images`` and ``orig_target_sizes``) and where to write the ``.rknn``, the simulator's outputs (``.npz``) and a
JSON result. Exit status: 0 done, 1 a toolkit step failed (the result JSON names the step), 2 a bad job file.
"""

import json
import os
import sys
import time

# Python puts this script's folder first on sys.path, where the package's own ``rknn.py`` would shadow the
# toolkit's ``rknn`` package: drop it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]


def _fail(result_path, step, message):
    with open(result_path, "w") as handle:
        json.dump({"ok": False, "step": step, "message": message}, handle)
    return 1


def _build(rknn, job):
    height, width = job["input_size"]
    batch = job["batch"]
    config = {"target_platform": job["platform"], "optimization_level": job.get("optimization_level", 3)}
    if rknn.config(**config) != 0:
        return "config"
    inputs = ["images", "orig_target_sizes"]
    if rknn.load_onnx(model=job["onnx"], inputs=inputs, input_size_list=[[batch, 3, height, width], [batch, 2]]) != 0:
        return "load_onnx"
    quantize = job["precision"] == "int8"
    if rknn.build(do_quantization=quantize, dataset=job.get("dataset") if quantize else None) != 0:
        return "build"
    if rknn.export_rknn(job["rknn"]) != 0:
        return "export_rknn"
    return None


def _simulate(rknn, job, numpy):
    if rknn.init_runtime(target=None) != 0:
        return "init_runtime", None
    feeds = numpy.load(job["verify_inputs"])
    images, sizes = feeds["images"], feeds["orig_target_sizes"]
    batch = job["batch"]
    outputs = {"labels": [], "boxes": [], "scores": []}
    start = time.perf_counter()
    for first in range(0, len(images), batch):
        results = rknn.inference(
            inputs=[images[first : first + batch], sizes[first : first + batch]], data_format=["nchw", "nchw"]
        )
        if results is None:
            return "inference", None
        for name, array in zip(("labels", "boxes", "scores"), results, strict=True):
            outputs[name].append(numpy.asarray(array))
    seconds = (time.perf_counter() - start) / max(1, len(images) // batch)
    numpy.savez(job["outputs"], **{name: numpy.concatenate(parts) for name, parts in outputs.items()})
    return None, seconds


def main(argv):
    if len(argv) != 2:
        print("usage: rknn_driver.py JOB.json", file=sys.stderr)
        return 2
    try:
        with open(argv[1]) as handle:
            job = json.load(handle)
        result_path = job["result"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"rknn_driver: bad job file {argv[1]}: {exc}", file=sys.stderr)
        return 2
    from importlib.metadata import version

    import numpy
    from rknn.api import RKNN

    rknn = RKNN(verbose=False)
    step = _build(rknn, job)
    try:
        if step is not None:
            return _fail(result_path, step, f"rknn-toolkit2 {step} returned an error (see the toolkit's log above)")
        seconds = None
        if job.get("verify_inputs"):
            step, seconds = _simulate(rknn, job, numpy)
            if step is not None:
                return _fail(result_path, step, f"the simulator's {step} failed")
    finally:
        rknn.release()
    with open(result_path, "w") as handle:
        record = {"ok": True, "toolkit": version("rknn-toolkit2"), "simulator_s_per_batch": seconds}
        json.dump(record, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The model on a CUDA device: same results as on the CPU, in both sampling modes, and in FP16."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from helpers import randomize_heads  # noqa: E402

from rtdetr_deploy.models import build_model, get_preset  # noqa: E402
from rtdetr_deploy.models.deformable_attention import discrete_indices  # noqa: E402
from rtdetr_deploy.models.postprocess import postprocess  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _exact_fp32():
    # TF32 matmuls would make CUDA-vs-CPU differences a matter of TF32's 10-bit mantissa, not of our code.
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


@pytest.mark.parametrize("sampling", ["bilinear", "discrete"])
def test_cuda_matches_cpu_for_r18vd(sampling):
    torch.manual_seed(0)
    model = build_model(get_preset("r18vd"), sampling=sampling)
    randomize_heads(model)
    model.eval()
    images = torch.rand(2, 3, 640, 640)
    with torch.no_grad():
        cpu = model(images)
        gpu = model.cuda()(images.cuda())
    cpu_dets = postprocess(cpu["pred_logits"], cpu["pred_boxes"], torch.tensor([[640, 640]] * 2), topk=100)
    gpu_dets = postprocess(gpu["pred_logits"].cpu(), gpu["pred_boxes"].cpu(), torch.tensor([[640, 640]] * 2), topk=100)
    torch.testing.assert_close(gpu_dets[2], cpu_dets[2], atol=1e-4, rtol=0)
    assert (gpu_dets[0] == cpu_dets[0]).float().mean() >= 0.99


def test_discrete_indices_identical_on_cuda():
    locations = torch.rand(4, 100, 8, 2) * 1.2 - 0.1
    cpu = discrete_indices(locations, 40, 60)
    assert torch.equal(discrete_indices(locations.cuda(), 40, 60).cpu(), cpu)


def test_fp16_inference_keeps_top_detections():
    torch.manual_seed(0)
    model = build_model(get_preset("r18vd"), sampling="discrete")
    randomize_heads(model)
    model = model.eval().cuda()
    images = torch.rand(1, 3, 640, 640, device="cuda")
    sizes = torch.tensor([[640, 640]], device="cuda")
    with torch.no_grad():
        fp32 = model(images)
        with torch.autocast("cuda", dtype=torch.float16):
            fp16 = model(images)
    labels32, boxes32, scores32 = postprocess(fp32["pred_logits"], fp32["pred_boxes"], sizes, topk=20)
    labels16, boxes16, scores16 = postprocess(fp16["pred_logits"].float(), fp16["pred_boxes"].float(), sizes, topk=20)
    assert torch.isfinite(scores16).all()
    assert (labels16 == labels32).float().mean() >= 0.8
    torch.testing.assert_close(scores16, scores32, atol=2e-2, rtol=0)

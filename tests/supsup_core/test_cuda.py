"""CUDA checks for supsup_core (deselected by default; run with ``-m cuda`` on a GPU machine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supsup_core.config import ModelConfig
from supsup_core.inference import coefficient_gradients, infer_task
from supsup_core.models import build_model
from supsup_core.packing import pack_bool, unpack_bool

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CFG = ModelConfig(arch="lenet", hidden=(32, 16), output_size=20, seed=5)


def _pair(n_tasks: int = 6):
    """The same model on CPU and CUDA with the same finished masks."""
    cpu = build_model(CFG)
    for _ in range(n_tasks):
        cpu.add_task()
        cpu.finish_task()
    gpu = build_model(CFG, "cuda")
    gpu.import_masks([cpu.export_masks(t) for t in range(n_tasks)])
    return cpu, gpu


def _x(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


class TestCuda:
    def test_base_weights_and_scores_bit_identical(self):
        """CUDA models get the CPU's base weights and task scores bit for bit."""
        cpu, gpu = build_model(CFG), build_model(CFG, "cuda")
        assert gpu.device.type == "cuda" and cpu.base_fingerprint() == gpu.base_fingerprint()
        cpu.add_task(), gpu.add_task()
        assert all(torch.equal(a, b.cpu()) for a, b in zip(cpu.score_parameters(), gpu.score_parameters()))

    def test_packing_on_device(self):
        """Packing on CUDA gives the CPU bytes and unpacks on the device."""
        mask = torch.rand(1001, generator=torch.Generator().manual_seed(1)) < 0.5
        packed = pack_bool(mask.cuda())
        assert packed.is_cuda and torch.equal(packed.cpu(), pack_bool(mask))
        assert torch.equal(unpack_bool(packed, (1001,)).cpu(), mask)

    def test_training_finishes_on_device(self):
        """add_task/finish_task on CUDA stores the same masks as on CPU."""
        cpu, gpu = build_model(CFG), build_model(CFG, "cuda")
        for model in (cpu, gpu):
            model.add_task()
            model.finish_task()
        a, b = cpu.export_masks(0), gpu.export_masks(0)
        assert all(np.array_equal(a[n], b[n]) for n in a)

    def test_forward_and_coefficients_match_cpu(self):
        """Finished-task logits and packed coefficient gradients agree between CPU and CUDA."""
        cpu, gpu = _pair()
        x = _x(8)
        cpu.set_task(3), gpu.set_task(3)
        assert torch.allclose(cpu(x), gpu(x.cuda()).cpu(), atol=1e-4)
        g_cpu = coefficient_gradients(cpu, x, "H")
        g_gpu = coefficient_gradients(gpu, x.cuda(), "H")
        assert g_gpu.is_cuda and torch.allclose(g_cpu, g_gpu.cpu(), rtol=1e-3, atol=1e-6)

    @pytest.mark.parametrize("method", ["oneshot", "binary"])
    def test_same_choices_as_cpu(self, method):
        """infer_task picks the same tasks on CUDA as on CPU, per batch and per image."""
        cpu, gpu = _pair()
        x = _x(4, 2)
        assert infer_task(cpu, x[:1], method=method) == infer_task(gpu, x[:1].cuda(), method=method)
        per_cpu = infer_task(cpu, x, method=method, per="image")
        assert torch.equal(per_cpu, infer_task(gpu, x.cuda(), method=method, per="image").cpu())

    def test_model_moves_with_its_masks(self):
        """model.to('cuda') moves the packed masks; outputs match the CPU model."""
        cpu, _ = _pair(3)
        moved = build_model(CFG)
        moved.import_masks([cpu.export_masks(t) for t in range(3)])
        moved.to("cuda")
        moved.set_alphas(None), cpu.set_alphas(None)
        assert torch.allclose(moved(_x(2).cuda()).cpu(), cpu(_x(2)), atol=1e-4)

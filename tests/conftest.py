"""Shared fixtures: one CPU thread, cached VGG networks, small generated images.

Every image here is generated in memory or in ``tmp_path``: the suite needs no download and
no GPU. Tests that want the sample photos use :func:`shared_image`, which skips when the
``shared`` folder beside the checkout is absent.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from warpaint.io import tensor_to_pil
from warpaint.vgg import VGGFeatures

#: The sample images live in ../shared/images beside the checkout; never copied into the repo.
SHARED_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "images"


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The suite must stay fast on a busy 2-core machine: one intra-op thread for torch."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def device() -> torch.device:
    return torch.device("cpu")


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture
def tol(dtype: torch.dtype) -> dict[str, float]:
    """assert_close tolerances for ``dtype``."""
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}


@pytest.fixture(scope="session")
def vgg() -> VGGFeatures:
    """The real VGG19 (bundled Caffe weights, max pooling), loaded once per session."""
    return VGGFeatures(pooling="max", pretrained=True)


@pytest.fixture(scope="session")
def vgg_random() -> VGGFeatures:
    """A VGG19 with random weights (seeded): for shape and plumbing tests."""
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    net = VGGFeatures(pretrained=False)
    torch.random.set_rng_state(state)
    return net


# -- generated images ------------------------------------------------------------------------
def make_content(h: int = 48, w: int = 64) -> torch.Tensor:
    """A smooth colour gradient with a yellow disc and a blue rectangle, (1, 3, h, w)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.7 - 0.4 * x * y])[None].clone()
    disc = (x - 0.35) ** 2 + (y - 0.5) ** 2 < 0.04
    img[0, :, disc] = torch.tensor([0.9, 0.8, 0.2])[:, None]
    rect = (x > 0.6) & (x < 0.85) & (y > 0.2) & (y < 0.7)
    img[0, :, rect] = torch.tensor([0.2, 0.3, 0.8])[:, None]
    return img


def make_stripes(h: int = 64, w: int = 64, period: int = 6,
                 c1=(1.0, 0.1, 0.1), c2=(0.1, 0.1, 0.9)) -> torch.Tensor:
    """High-frequency diagonal red/blue stripes, (1, 3, h, w)."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    m = ((x + y) // (period // 2)) % 2 == 0
    return torch.where(m, torch.tensor(c1)[:, None, None], torch.tensor(c2)[:, None, None])[None].float()


def make_checker(h: int = 64, w: int = 64, k: int = 4,
                 c1=(0.1, 0.9, 0.2), c2=(0.95, 0.95, 0.1)) -> torch.Tensor:
    """A green/yellow checkerboard of k-px squares, (1, 3, h, w)."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    m = (x // k + y // k) % 2 == 0
    return torch.where(m, torch.tensor(c1)[:, None, None], torch.tensor(c2)[:, None, None])[None].float()


@pytest.fixture(scope="session")
def images() -> SimpleNamespace:
    """The image generators, for tests that need other sizes or colours."""
    return SimpleNamespace(content=make_content, stripes=make_stripes, checker=make_checker)


@pytest.fixture
def content_image() -> torch.Tensor:
    return make_content()


@pytest.fixture
def style_image() -> torch.Tensor:
    return make_stripes()


@pytest.fixture
def style_image_b() -> torch.Tensor:
    return make_checker()


@pytest.fixture
def image_files(tmp_path) -> dict[str, Path]:
    """content.png (64x48) and style.png (64x64) written in tmp_path."""
    paths = {"content": tmp_path / "content.png", "style": tmp_path / "style.png"}
    tensor_to_pil(make_content()).save(paths["content"])
    tensor_to_pil(make_stripes()).save(paths["style"])
    return paths


@pytest.fixture
def shared_image():
    """``shared_image("content/tubingen.jpg")``: a sample image beside the checkout, or skip."""

    def get(relative: str) -> Path:
        path = SHARED_IMAGES / relative
        if not path.is_file():
            pytest.skip(f"sample image {relative} not found in {SHARED_IMAGES} "
                        "(the shared folder beside the checkout)")
        return path

    return get


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for ``python -m warpaint`` children: one thread, no GPU, unbuffered."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONUNBUFFERED="1", COLUMNS="200")
    return env


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture
def ctrl_c_at_step(monkeypatch):
    """``ctrl_c_at_step(n)``: the next training run (``warpaint.training.fit``) is interrupted
    as if by Ctrl-C when it starts step ``n``; runs after that one are left alone."""
    from warpaint import training

    real = training.step_generator

    def arm(n: int) -> None:
        state = {"stopped": False}

        def interrupting(seed: int, step: int) -> torch.Generator:
            if step == n and not state["stopped"]:
                state["stopped"] = True
                raise KeyboardInterrupt
            return real(seed, step)

        monkeypatch.setattr(training, "step_generator", interrupting)

    return arm

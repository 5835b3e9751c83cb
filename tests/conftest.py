import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _evaluation_cache(tmp_path_factory):
    """Classifiers and reference features of this test session, never the user's ~/.cache/ddpm."""
    os.environ["DDPM_CACHE"] = str(tmp_path_factory.mktemp("ddpm-cache"))
    yield


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


class TinyEps(torch.nn.Module):
    """A small network that depends on x and t, for tests of the maths."""

    def __init__(self, dim=2):
        super().__init__()
        self.lin = torch.nn.Linear(dim + 1, dim)

    def forward(self, x, t, y=None):
        flat = x.reshape(x.shape[0], -1)
        h = torch.cat([flat[:, : self.lin.in_features - 1], (t[:, None] / 100.0)], dim=1)
        return torch.tanh(self.lin(h)).reshape(x.shape[0], -1)[:, : flat.shape[1]].reshape(x.shape)


@pytest.fixture
def tiny_eps():
    return TinyEps()

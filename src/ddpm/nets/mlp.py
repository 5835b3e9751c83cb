"""A time-conditioned MLP noise predictor for vector (e.g. 2-D) data."""

from torch import nn

from .embeddings import LabelEmbedding, time_features


class ResidualBlock(nn.Module):
    """h + Linear(SiLU(Linear(h) + time projection)).

    No normalisation layers: they would bound the output, while the noise an eps network
    must predict far in the tails grows linearly with x_t; a bounded prediction lets
    ancestral sampling (which scales x by 1/sqrt(alpha_t) every step) run away there.
    """

    def __init__(self, width: int, time_dim: int):
        super().__init__()
        self.time = nn.Linear(time_dim, width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        self.act = nn.SiLU()

    def forward(self, h, temb):
        return h + self.fc2(self.act(self.fc1(h) + self.time(temb)))


class MLP(nn.Module):
    """eps_theta(x_t, t) for vectors: sinusoidal time embedding and residual blocks.

    ``forward(x, t, y=None)`` with x (B, dim) and t (B,) float step indices returns (B, out_dim),
    ``out_dim`` = ``dim`` unless it also predicts a variance (2 ``dim``).
    The time embedding is sinusoidal (Vaswani et al.), or Gaussian random Fourier features
    (``time_embedding="fourier"``, :class:`~ddpm.nets.embeddings.GaussianFourierEmbedding`),
    followed by a two-layer MLP, as in the DDPM U-Net, so that steps are not fed to the
    network as raw integers.
    """

    def __init__(self, dim: int = 2, width: int = 128, depth: int = 3, time_dim: int = 64, num_classes: int | None = None,
                 out_dim: int | None = None, time_embedding: str = "sinusoidal"):
        super().__init__()
        out_dim = out_dim or dim
        self.config = dict(dim=dim, width=width, depth=depth, time_dim=time_dim, num_classes=num_classes, out_dim=out_dim,
                           time_embedding=time_embedding)
        self.time_embed = nn.Sequential(
            time_features(time_embedding, time_dim), nn.Linear(time_dim, time_dim), nn.SiLU(),
            nn.Linear(time_dim, time_dim),
        )
        self.label_embed = LabelEmbedding(num_classes, time_dim) if num_classes else None
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(ResidualBlock(width, time_dim) for _ in range(depth))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(width, out_dim))

    def forward(self, x, t, y=None):
        temb = self.time_embed(t)
        if self.label_embed is not None:  # y=None or label num_classes: "no label"
            temb = temb + self.label_embed(y, x.shape[0], x.device)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, temb)
        return self.out(h)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

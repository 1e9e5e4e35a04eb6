"""Temporal supersampling network, shaped for layer caching.

Two branches meet at low resolution:

* ``fast``: two convolutions over the current jittered colour and its jitter offset. It always runs.
* ``slow``: a 3-level U-Net over the G-buffers (albedo, normal, depth) and colour: geometry and materials
  change slowly from frame to frame, so its features can come from the cache (``cut="slow"``).

Their joined features are up-sampled to the display resolution and combined there with the bicubic
up-sampled colour (jitter undone) and the previous output warped by motion (temporal feedback): the last
layers predict, per display pixel, how much of the history to keep and a colour correction, so the jittered
samples of successive frames accumulate as in TAA. Colour is processed as ``log1p`` of linear radiance.

Three designs share this code (``design=``; ``"v2"`` is the default and the shipped one):

* ``"v1"``: the fast and slow features are concatenated and mixed by two convolutions, then a 3-layer
  refinement at display resolution. A hit still runs 46 % of the FLOPs.
* ``"split"``: designed for the cache. The first mixing convolution is linear in its two inputs, so its
  slow half moves into the cached branch (``slow`` ends with it) and the hit only adds the fast half; the
  fast branch and the display-resolution refinement are one layer thinner. A hit runs about a fifth of the
  FLOPs, which is what bounds the speedup of caching (1 / hit share at 100 % hits).
* ``"v2"``: v1's branches, with a display-resolution resolve that chooses among candidates instead of
  trusting one: the warped history, the same clamped to the current frame's local colour range (the TAA
  clamp against ghosting where motion vectors describe another surface, as behind glass), bicubic and
  bilinear up-sampling (bicubic rings on very bright edges, bilinear does not), and the nearest jittered
  sample itself, with that sample's distance to the display pixel (a sample that lands on the pixel is
  exact). The layers predict a softmax blend of the candidates plus a small correction; the history is
  warped bicubically (repeated bilinear resampling of the history blurs it frame after frame).
* ``"v3"``: caching-aware v2. v2's candidates and resolve, with split's cut: the slow half of the first
  mixing layer is cached with the slow branch, the fast branch is one convolution, and the
  display-resolution resolve is two 1x1 layers (v2: three 3x3), its spatial context coming from the
  low-res joint features. A hit runs about a tenth of the FLOPs at width 32 (the slow branch grows with the
  width, the hit path does not); at 1920x1080 the candidates' resampling is most of a hit's time.
  Trained with the cache in the loop (``train --cache-in-loop P``: each later frame of a training sequence
  reuses, with chance P, the slow features of the last frame that computed them), so a hit is a case it
  has seen.
* ``"v4"``: v2 with its work moved to where the cache is. v2's fast branch and display-resolution resolve are
  kept as they are (v3 showed that a thinner resolve loses v2's sharpness); the slow half of v2's first
  mixing layer moves into the cached branch (as in split: the layer is linear in its two inputs), and the
  cached G-buffer U-Net is wider (``slow_width``, 48 where v2 has 24). A hit runs the same layers as a v2 hit
  minus that half layer; a refresh runs a deeper-reaching branch. :func:`v4_from_v2` builds one that computes
  exactly what a trained v2 computes, so it is trained on from shipped weights, not from scratch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from reframe_core.errors import SettingsError
from reframe_core.networks.resampling import upsample_by_phases, whole_scale
from reframe_core.networks.windows import window_max, window_min

GBUFFER_CHANNELS = 7  # albedo 3, normal 3, normalised depth 1


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))


class SlowBranch(nn.Module):
    """U-Net over G-buffers + colour at levels 1, 1/2, 1/4 of the low resolution."""

    def __init__(self, cin: int, width: int = 24):
        super().__init__()
        w = width
        self.enc1 = nn.Sequential(_conv(cin, w), _conv(w, w))
        self.enc2 = nn.Sequential(nn.AvgPool2d(2), _conv(w, 2 * w), _conv(2 * w, 2 * w))
        self.enc3 = nn.Sequential(nn.AvgPool2d(2), _conv(2 * w, 4 * w), _conv(4 * w, 4 * w))
        self.dec2 = nn.Sequential(_conv(6 * w, 2 * w), _conv(2 * w, 2 * w))
        self.dec1 = nn.Sequential(_conv(3 * w, w), _conv(w, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([F.interpolate(e3, size=e2.shape[-2:], mode="bilinear", align_corners=False), e2], 1))
        return self.dec1(torch.cat([F.interpolate(d2, size=e1.shape[-2:], mode="bilinear", align_corners=False), e1], 1))


def display_grid(jitter: torch.Tensor, low_size, size) -> torch.Tensor:
    """(B, H, W, 2) ``grid_sample`` grid that reads a jittered low-res image of ``low_size`` where each display
    pixel of ``size`` really is.

    Low-res pixel (i, j) holds the scene at (j + 0.5 + jx, i + 0.5 + jy): the display pixel centre x maps to
    low-res coordinate ``(x + 0.5) * w / W`` and is read at that minus the jitter.
    """
    h, w = low_size
    xs = (torch.arange(size[1], dtype=jitter.dtype, device=jitter.device) + 0.5) * (w / size[1])
    ys = (torch.arange(size[0], dtype=jitter.dtype, device=jitter.device) + 0.5) * (h / size[0])
    gx = (xs[None, None, :] - jitter[:, 0, None, None]) / w * 2 - 1
    gy = (ys[None, :, None] - jitter[:, 1, None, None]) / h * 2 - 1
    return torch.stack([gx.expand(-1, size[0], -1), gy.expand(-1, -1, size[1])], dim=-1)


def upsample_unjittered(image: torch.Tensor, jitter: torch.Tensor, size, mode: str = "bicubic",
                        grid: torch.Tensor | None = None) -> torch.Tensor:
    """Up-sample a jittered low-res image to ``size``, sampling where each display pixel really is
    (:func:`display_grid`; pass ``grid`` to reuse one made for the same jitter and sizes)."""
    if grid is None:
        grid = display_grid(jitter.to(image.dtype), image.shape[-2:], size)
    return F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=False)


def sample_distance(jitter: torch.Tensor, low_size, size) -> torch.Tensor:
    """(B, 1, H, W): squared distance, in low-res pixels, from each display pixel centre to the nearest
    jittered low-res sample (0 where a sample lands on the pixel; up to 0.5)."""
    h, w = low_size
    xs = (torch.arange(size[1], dtype=jitter.dtype, device=jitter.device) + 0.5) * (w / size[1])
    ys = (torch.arange(size[0], dtype=jitter.dtype, device=jitter.device) + 0.5) * (h / size[0])
    dx = xs[None, :] - jitter[:, 0, None]  # samples sit at k + 0.5 in these coordinates
    dy = ys[None, :] - jitter[:, 1, None]
    dx = dx - torch.floor(dx) - 0.5
    dy = dy - torch.floor(dy) - 0.5
    return (dy[:, :, None] ** 2 + dx[:, None, :] ** 2)[:, None]


def neighbourhood_range(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and max of each pixel's 3x3 neighbourhood (pixels outside the image ignored), at its resolution."""
    return window_min(image), window_max(image)


def local_range(tone: torch.Tensor, jitter: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and max of each low-res pixel's 3x3 neighbourhood, read at the display pixels (nearest)."""
    low, high = neighbourhood_range(tone)
    return upsample_unjittered(torch.cat([low, high], 1), jitter, size, mode="nearest").chunk(2, 1)


V2_CANDIDATES = 5  # history, clamped history, bicubic, bilinear, nearest sample


@torch.fx.wrap  # runs as it is inside traced (cached) networks, so it can look at the actual device
def low_res_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` channels-last on a CPU, as it is elsewhere: the layout the low-resolution branches run in.

    oneDNN's 3x3 convolutions run faster on channels-last tensors on a CPU, and the branches at the rendered
    resolution are mostly such convolutions. Measured on this project's 2-core CPU, the shipped v4 before and
    after this layout (and the resolve's, below), interleaved in one process: a full pass 90.7 against 115.1 ms
    at 256x256 and 2763 against 3463 ms at 1920x1080 (README, "Channels-last where it pays"). The joint
    features leave them channels-last, which is how the resolve's up-sampling reads them fastest
    (:func:`resolve_inputs`). On a GPU the placement decides (``--channels-last``).
    """
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


# Display pixels from which a resolve input built by concatenation (training, the 1.5x scale) is converted to
# channels-last on a CPU; one written in place (:func:`resolve_inputs`) is channels-last on a CPU at any size.
CHANNELS_LAST_RESOLVE_PIXELS = 512 * 512


@torch.fx.wrap  # runs as it is inside traced (cached) networks, so it can look at the actual sizes and jitter
def resolve_inputs(tone: torch.Tensor, jitter: torch.Tensor, joint: torch.Tensor, past: torch.Tensor):
    """The v2/v4 resolve's per-display-pixel input (B, joint channels + 3 x V2_CANDIDATES + 1, H, W) at the size
    of ``past``: the up-sampled joint features, the candidates (history, clamped history, bicubic, bilinear,
    nearest sample: V2_CANDIDATES, in this order) and the nearest sample's distance; with the current frame's
    3x3 colour range (low, high) read at the display pixels.

    Built for memory traffic, which at display resolution costs a hit as much as the arithmetic does:

    * Layout: channels-last on a CPU. oneDNN's 3x3 convolutions run faster on channels-last tensors; measured on
      this project's 2-core CPU, the three layers with a conversion in and out took 0.91 s against 1.26 s
      channels-first at 1920x1080 and 186 against 310 ms at 960x540, but 28.5 against 24.3 ms at 256x256, so a
      concatenated input is converted from ``CHANNELS_LAST_RESOLVE_PIXELS`` display pixels up. Written in place
      (no conversion), a cached v4 frame took 26.2 against 28.6 ms at 256x256 and 10.3 against 11.1 ms at
      128x128 channels-last (interleaved runs).
    * Without autograd, on a CPU, at a whole-number scale: every piece is written once, straight into its
      channels of that tensor (no concatenation, no conversion), and the bilinear and bicubic up-samplings are
      shifted weighted sums (:mod:`reframe_core.networks.resampling`) instead of grid_sample's gather. At
      1920x1080 a cached v4 frame took 1.39 s against 1.60 s before, both with 4 kB pages (README, "A cheaper
      hit at 1080p"). Values are grid_sample's to float rounding. Training (autograd: ``out=`` writes cannot be
      differentiated), other scales and other devices take the concatenating path, every up-sampling through one
      grid.
    """
    size = past.shape[-2:]
    batch, channels = tone.shape[0], joint.shape[1]
    grid = display_grid(jitter.to(tone.dtype), tone.shape[-2:], size)
    low, high = neighbourhood_range(tone)
    low, high, nearest = upsample_unjittered(torch.cat([low, high, tone], 1), jitter, size, "nearest", grid).chunk(3, 1)
    distance = sample_distance(jitter, tone.shape[-2:], size).expand(batch, -1, -1, -1)
    on_cpu = tone.device.type == "cpu"
    scale = whole_scale(tone.shape[-2:], size)
    differentiated = torch.is_grad_enabled() and any(t.requires_grad for t in (tone, joint, past))
    if not (on_cpu and scale is not None and not differentiated):
        up, bilinear = upsample_unjittered(torch.cat([joint, tone], 1), jitter, size, "bilinear", grid).split([channels, 3], 1)
        bicubic = upsample_unjittered(tone, jitter, size, "bicubic", grid)
        features = torch.cat([up, past, torch.minimum(torch.maximum(past, low), high), bicubic, bilinear, nearest, distance], 1)
        converted = on_cpu and size[0] * size[1] >= CHANNELS_LAST_RESOLVE_PIXELS
        return features.contiguous(memory_format=torch.channels_last if converted else torch.contiguous_format), low, high
    features = torch.empty((batch, channels + 3 * V2_CANDIDATES + 1, *size), dtype=tone.dtype, device=tone.device,
                           memory_format=torch.channels_last)
    history, clamped, bicubic, bilinear, sample = (channels + 3 * k for k in range(V2_CANDIDATES))
    upsample_by_phases(joint, jitter, scale, "bilinear", out=features[:, :channels])
    features[:, history:history + 3] = past
    torch.minimum(torch.maximum(past, low), high, out=features[:, clamped:clamped + 3])
    # The colour's two up-samplings (adjacent channels) are sums of several passes each: channels-last, every pass
    # would touch a cache line per pixel for three values, so they are summed in a channels-first buffer and
    # copied in once (1920x1080, with the joint features channels-last: the whole input 204 against 307 ms).
    colour = torch.empty((batch, 6, *size), dtype=tone.dtype, device=tone.device)
    upsample_by_phases(tone, jitter, scale, "bicubic", out=colour[:, :3])
    upsample_by_phases(tone, jitter, scale, "bilinear", out=colour[:, 3:])
    features[:, bicubic:bilinear + 3] = colour
    features[:, sample:sample + 3] = nearest
    features[:, -1:] = distance
    return features, low, high


class SupersamplingNet(nn.Module):
    """Low-res colour + G-buffers + jitter + warped history -> display-resolution colour.

    Inputs of ``forward(color, gbuffer, jitter, history)``:
        color: (B, 3, h, w) linear colour rendered at low resolution with sub-pixel jitter.
        gbuffer: (B, 7, h, w) albedo, world normal, depth normalised as ``m / (m + d)`` (m: median depth).
        jitter: (B, 2) sample offset in low-res pixels (x right, y down), in [-0.5, 0.5).
        history: (B, 3, H, W) previous output warped to this frame (linear); on a reset, and where the
            warped history shows another surface than this frame (uncovered, entering the frame: the runner's
            depth test, ``workloads.supersampling.checked_history``), the bicubic up-sampled colour. Its size sets
            the output size (any scale factor).
    Returns: (B, 3, H, W) linear colour (may dip slightly below 0; consumers clamp).
    """

    DESIGNS = ("v1", "split", "v2", "v3", "v4")

    CORRECTIONS = ("free", "range", "bounded")
    RESOLVING_DESIGNS = ("v2", "v3", "v4")  # the designs whose resolve blends candidates and takes a correction setting

    def __init__(self, width: int = 24, design: str = "v2", resolve_kernel: int = 1, correction: str = "free",
                 slow_width: int | None = None):
        super().__init__()
        if design not in self.DESIGNS:
            raise SettingsError(f"unknown supersampling design {design!r}: one of {', '.join(self.DESIGNS)}")
        if correction not in self.CORRECTIONS or (correction != "free" and design not in self.RESOLVING_DESIGNS):
            raise SettingsError(f"correction must be one of {', '.join(self.CORRECTIONS)}, and 'range' or 'bounded' needs "
                                f"design v2, v3 or v4: got {correction!r} with design {design!r}")
        self.design = design
        # Low-resolution branches channels-last on a CPU (:func:`low_res_layout`); Placement turns this off when it
        # runs the whole network channels-last (its inputs then already are).
        self.mixed_memory_format = True
        # The number format the display-resolution resolve's layers run in when it is not the network's own:
        # ``Placement(precision="mixed")`` sets bfloat16 where the processor has bf16 arithmetic (they are most of a
        # cache hit). ``None``: the network's dtype. Their input is cast to it and their output back, so the
        # candidates, their blend and the temporal feedback stay in the network's dtype.
        self.reduced_precision = None
        # v2/v3 resolve: how far the colour correction added to the candidates' blend may go. "free": as far as the
        # layers say. "range": scaled by the current frame's local colour range (per channel, log space), so on a
        # flat area, where every candidate already agrees, the layers cannot shift the colour: a network trained
        # on other scenes tinted a real scene's sunlit wall by 1.7 % that way, which FLIP sees over the whole wall.
        # "bounded": "range", and the result kept inside that local range (TAA's clamp, applied to the output): no
        # dark or coloured fringe beyond what the samples around a pixel hold, where a bright sky meets a wall.
        self.correction = correction
        # How the previous output is warped to the current frame (Supersampler and training read this).
        self.history_warp = "bicubic" if design in self.RESOLVING_DESIGNS else "bilinear"
        if slow_width is not None and design != "v4":
            raise SettingsError(f"slow_width is design v4's (its cached branch is wider than its hit path); design {design!r} "
                                "has one width: drop slow_width or choose design v4")
        if design in ("v1", "v2"):
            self.fast = nn.Sequential(_conv(3 + 2, width), _conv(width, width))
            self.slow = SlowBranch(3 + GBUFFER_CHANNELS, width)
            self.joint = nn.Sequential(_conv(2 * width, width), nn.Conv2d(width, 16, 3, padding=1))
        if design == "v4":
            slow_width = slow_width or width
            self.fast = nn.Sequential(_conv(3 + 2, width), _conv(width, width))
            # v2's joint layer split as in "split": its slow half is cached with the (wider) slow branch.
            self.slow = nn.Sequential(SlowBranch(3 + GBUFFER_CHANNELS, slow_width), nn.Conv2d(slow_width, width, 3, padding=1))
            self.joint = nn.Conv2d(width, width, 3, padding=1, bias=False)
            self.joint_out = nn.Conv2d(width, 16, 3, padding=1)
        if design in ("v2", "v4"):
            self.refine = nn.Sequential(_conv(16 + 3 * V2_CANDIDATES + 1, 24), _conv(24, 16),
                                        nn.Conv2d(16, V2_CANDIDATES + 3, 3, padding=1))
        elif design == "v3":
            self.fast = _conv(3 + 2, 16)
            # conv(cat(fast, slow)) == conv_fast(fast) + conv_slow(slow): the slow half is cached with the branch.
            self.slow = nn.Sequential(SlowBranch(3 + GBUFFER_CHANNELS, width), nn.Conv2d(width, 24, 3, padding=1))
            self.joint = nn.Conv2d(16, 24, 3, padding=1, bias=False)
            self.joint_out = nn.Conv2d(24, 16, 3, padding=1)
            # Per display pixel only (1x1): the spatial context comes from the low-res joint features, so the
            # display-resolution work that every hit pays stays a few hundred MACs per pixel.
            # ``resolve_kernel=3``: the first display-resolution layer sees its 3x3 neighbourhood (more work per hit).
            if resolve_kernel not in (1, 3):
                raise SettingsError(f"resolve_kernel must be 1 or 3, got {resolve_kernel}")
            self.refine = nn.Sequential(nn.Conv2d(16 + 3 * V2_CANDIDATES + 1, 24, resolve_kernel, padding=resolve_kernel // 2),
                                        nn.LeakyReLU(0.1, inplace=True), nn.Conv2d(24, V2_CANDIDATES + 3, 1))
        elif design == "v1":
            # Per display pixel: a blend weight between the warped history and the current frame (as TAA
            # does, which is what accumulates the jittered samples over frames) and a colour correction.
            self.refine = nn.Sequential(_conv(16 + 3 + 3, 24), _conv(24, 16), nn.Conv2d(16, 4, 3, padding=1))
        else:
            self.fast = _conv(3 + 2, 16)
            # conv(cat(fast, slow)) == conv_fast(fast) + conv_slow(slow): the slow half is cached with the branch.
            self.slow = nn.Sequential(SlowBranch(3 + GBUFFER_CHANNELS, width), nn.Conv2d(width, 16, 3, padding=1))
            self.joint = nn.Conv2d(16, 16, 3, padding=1, bias=False)
            self.refine = nn.Sequential(_conv(16 + 3 + 3, 16), nn.Conv2d(16, 4, 3, padding=1))

    def reduced_precision_layers(self) -> nn.Module | None:
        """The layers that may run in bfloat16 (:attr:`reduced_precision`): the v2/v4 resolve's, which predict the
        candidates' blend weights and a small correction (rounding them moves the output far less than rounding the
        colours would); ``None`` for the other designs."""
        return self.refine if self.design in ("v2", "v4") else None

    def forward(self, color: torch.Tensor, gbuffer: torch.Tensor, jitter: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        tone = torch.log1p(color.clamp(min=0))
        jitter_map = jitter[:, :, None, None].expand(-1, -1, color.shape[-2], color.shape[-1])
        fast_input, slow_input = torch.cat([tone, jitter_map], 1), torch.cat([tone, gbuffer], 1)
        if self.mixed_memory_format:
            fast_input, slow_input = low_res_layout(fast_input), low_res_layout(slow_input)
        fast = self.fast(fast_input)
        slow = self.slow(slow_input)
        if self.design in ("v1", "v2"):
            joint = self.joint(torch.cat([fast, slow], 1))
        elif self.design in ("v3", "v4"):
            joint = self.joint_out(F.leaky_relu(self.joint(fast) + slow, 0.1))
        else:
            joint = F.leaky_relu(self.joint(fast) + slow, 0.1)
        size = history.shape[-2:]
        past = torch.log1p(history.clamp(min=0))
        if self.design == "v3":
            return self._resolve_v3(tone, jitter, joint, past, size)
        if self.design in ("v2", "v4"):
            return self._resolve_v2(tone, jitter, joint, past, size)
        # The jitter is undone here, exactly: the layers only learn what interpolation cannot give.
        base = upsample_unjittered(tone, jitter, size)
        up = upsample_unjittered(joint, jitter, size, mode="bilinear")
        refined = self.refine(torch.cat([up, base, past], 1))
        weight = torch.sigmoid(refined[:, :1])
        out = weight * past + (1 - weight) * base + refined[:, 1:]
        # No lower clamp: it would stop gradients where the output dips below zero (a dead network).
        return torch.expm1(out.clamp(max=12))

    def _resolve_v2(self, tone, jitter, joint, past, size) -> torch.Tensor:
        # The jitter is undone here, exactly: the layers only learn what interpolation cannot give. The blend
        # reads the candidates from the tensor the layers read, in its layout (:func:`resolve_inputs`).
        features, low, high = resolve_inputs(tone, jitter, joint, past)
        if self.reduced_precision is None:
            refined = self.refine(features)
        else:
            refined = self.refine(features.to(self.reduced_precision)).to(features.dtype)
        channels = joint.shape[1]
        candidates = features[:, channels:channels + 3 * V2_CANDIDATES].unflatten(1, (V2_CANDIDATES, 3))
        weights = torch.softmax(refined[:, :V2_CANDIDATES], 1)
        # The weighted sum without the (B, candidates, 3, H, W) product a broadcast multiply would write first:
        # 84 against 130 ms at 1920x1080 on this project's CPU, same values.
        blend = torch.einsum("bkhw,bkchw->bchw", weights, candidates)
        return self._blend_output(blend, refined[:, V2_CANDIDATES:], low, high)

    def _resolve_v3(self, tone, jitter, joint, past, size) -> torch.Tensor:
        """v2's candidates, resolved per pixel, with the display-resolution memory traffic kept down: the joint
        features are up-sampled without undoing the jitter (smooth features; the fast branch sees the jitter),
        and every per-pixel input is written once, into one tensor whose candidate slice the blend reads."""
        low, high = local_range(tone, jitter, size)
        up = F.interpolate(joint, size=size, mode="bilinear", align_corners=False)
        distance = sample_distance(jitter, tone.shape[-2:], size).expand(tone.shape[0], -1, -1, -1)
        features = torch.cat([up, past, torch.minimum(torch.maximum(past, low), high),
                              upsample_unjittered(tone, jitter, size),
                              upsample_unjittered(tone, jitter, size, mode="bilinear"),
                              upsample_unjittered(tone, jitter, size, mode="nearest"), distance], 1)
        refined = self.refine(features)
        channels = joint.shape[1]
        candidates = features[:, channels:channels + 3 * V2_CANDIDATES].unflatten(1, (V2_CANDIDATES, 3))
        weights = torch.softmax(refined[:, :V2_CANDIDATES], 1)[:, :, None]
        return self._blend_output((weights * candidates).sum(1), refined[:, V2_CANDIDATES:], low, high)

    def _blend_output(self, blend: torch.Tensor, correction: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        if self.correction == "free":
            return torch.expm1((blend + correction).clamp(max=12))
        out = blend + correction * (high - low)
        if self.correction == "bounded":
            out = torch.minimum(torch.maximum(out, low), high)
        return torch.expm1(out.clamp(max=12))


CACHE_CUT = "slow"  # what the cache keeps between refreshes


def build(**kwargs) -> SupersamplingNet:
    return SupersamplingNet(**kwargs)


def v4_from_v2(v2: SupersamplingNet, slow_width: int, added_from: SupersamplingNet | None = None) -> SupersamplingNet:
    """A design-v4 network that computes what ``v2`` computes, with a slow branch ``slow_width`` channels wide.

    Function-preserving widening (Net2Net's idea): each of the slow branch's layers keeps v2's channels first,
    with v2's weights; the added channels start at their usual random initialisation, and every layer reads
    them with zero weights, so they change nothing until training gives those weights a value. v2's first
    mixing layer splits into the cached slow half (``slow[1]``, which takes the layer's bias) and the fast half
    (``joint``); its second layer is ``joint_out``.

    ``added_from``: a v4 network of this width whose added channels' own weights (the rows nothing here reads)
    are taken instead of a random initialisation: with a v4 trained from ``v2``, the two then differ only in
    weights both use, which is what a straight line between them (:func:`reframe_core.training.interpolate_weights`)
    should move.
    """
    if v2.design != "v2":
        raise SettingsError(f"v4_from_v2 needs a design-v2 network, got design {v2.design!r}")
    w = v2.fast[0][0].out_channels
    if slow_width < w:
        raise SettingsError(f"slow_width {slow_width} is narrower than the v2 network's width {w}: widening only adds channels")
    v4 = SupersamplingNet(width=w, design="v4", correction=v2.correction, slow_width=slow_width)
    if added_from is not None:
        if added_from.design != "v4" or added_from.slow[0].enc1[0][0].out_channels != slow_width:
            raise SettingsError(f"added_from must be a design-v4 network with slow width {slow_width}")
        v4.slow.load_state_dict(added_from.slow.state_dict())
    v4.fast.load_state_dict(v2.fast.state_dict())
    v4.refine.load_state_dict(v2.refine.state_dict())
    W = slow_width
    old, new = v2.slow, v4.slow[0]
    same = lambda n: list(range(n))  # noqa: E731
    # (layer, where each of v2's input channels sits in the wider layer's input): the U-Net's skip joins put the
    # up-sampled deeper features first, then the same level's encoder features.
    layers = [("enc1.0.0", same(old.enc1[0][0].in_channels)), ("enc1.1.0", same(w)),
              ("enc2.1.0", same(w)), ("enc2.2.0", same(2 * w)), ("enc3.1.0", same(2 * w)), ("enc3.2.0", same(4 * w)),
              ("dec2.0.0", same(4 * w) + [4 * W + i for i in range(2 * w)]), ("dec2.1.0", same(2 * w)),
              ("dec1.0.0", same(2 * w) + [2 * W + i for i in range(w)]), ("dec1.1.0", same(w))]
    with torch.no_grad():
        for name, inputs in layers:
            src, dst = old.get_submodule(name), new.get_submodule(name)
            kept = src.out_channels
            dst.weight[:kept] = 0
            dst.weight[:kept, inputs] = src.weight
            dst.bias[:kept] = src.bias
        mix = v2.joint[0][0]
        v4.slow[1].weight.zero_()
        v4.slow[1].weight[:, :w] = mix.weight[:, w:]
        v4.slow[1].bias.copy_(mix.bias)
        v4.joint.weight.copy_(mix.weight[:, :w])
        v4.joint_out.load_state_dict(v2.joint[1].state_dict())
    return v4


def example_inputs(height: int = 256, width: int = 256, batch: int = 1, scale: float = 2.0) -> tuple[torch.Tensor, ...]:
    h, w = round(height / scale), round(width / scale)
    return (torch.rand(batch, 3, h, w), torch.rand(batch, GBUFFER_CHANNELS, h, w), torch.rand(batch, 2) - 0.5,
            torch.rand(batch, 3, height, width))

"""Where to cut a network for caching: torch.fx analysis of an unmodified ``nn.Module``.

A *cut* is the set of tensors stored on a refresh frame. Given the cut, the *hit path* is everything the
output still needs when those tensors come from the cache: a backward walk from the output that stops at the
cached tensors. Nothing else runs on a hit.

Candidates come in two families:

* ``level:K`` -- resolution cuts. Everything computed below the K-th spatial level of the input (and
  everything computed only from such tensors, e.g. the up-sampling that brings deep features back) is
  cached. ``level:0`` on a U-Net stores the output of the last up-sampling, exactly ReFrame's U-Net cut; on a
  U-Net++ it stores every up-sampled tensor that feeds the top row; on ExtraNet the up-sampled output of
  ``up2``.
* a tensor name -- one input of a join (``cat``/``add``/``mul``): caches that whole branch, which is how
  two-branch nets keep their slow branch (G-buffer/temporal features) and always run the fast one.

FLOPs are counted per graph node with ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and
matrix products; element-wise ops count zero) on the example inputs.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch.utils.flop_counter import FlopCounterMode
from reframe_core.errors import ReframeError


class CutError(ReframeError, ValueError):
    """A cut could not be planned: unknown name, untraceable model, or a cut that leaves nothing to run."""


_JOIN_TARGETS = {torch.cat, torch.concat, torch.stack, torch.add, torch.mul, operator.add, operator.mul}


@dataclass(frozen=True)
class NodeInfo:
    """What the example run saw at one graph node."""

    name: str
    shape: tuple[int, ...] | None  # None when the value is not a tensor
    flops: int
    resolution: int | None  # H*W of a tensor with >= 4 dims, else None


@dataclass(frozen=True)
class CutPlan:
    """One way to cut a network.

    Attributes:
        name: how to ask for it again (``cut=...``): ``level:K``, a tensor name, or ``manual``.
        cached: graph-node names of the stored values, in the order the hit path receives them.
        cached_labels: the same values named by the submodule whose output they are, where one is.
        cached_shapes: their shapes at the example inputs (None for non-tensor values).
        hit_nodes: graph nodes the hit path runs.
        total_flops / hit_flops: FLOPs of a full pass / a hit pass at the example inputs.
        valid: whether the hit path still recomputes a full-resolution layer from the current inputs.
        note: why a plan is not valid, or how it was chosen.
    """

    name: str
    cached: tuple[str, ...]
    cached_shapes: tuple[tuple[int, ...] | None, ...]
    hit_nodes: frozenset[str]
    total_flops: int
    hit_flops: int
    valid: bool = True
    note: str = ""
    cached_labels: tuple[str, ...] = ()

    @property
    def hit_share(self) -> float:
        """Share of a full pass's FLOPs that a hit still spends."""
        return self.hit_flops / self.total_flops if self.total_flops else 1.0

    @property
    def removed_share(self) -> float:
        """Share of a full pass's FLOPs that a hit removes."""
        return 1.0 - self.hit_share

    def describe(self) -> dict:
        return {
            "name": self.name,
            "cached": list(self.cached_labels or self.cached),
            "cached_shapes": [list(s) if s is not None else None for s in self.cached_shapes],
            "hit_flops_share": round(self.hit_share, 4),
            "flops_removed_share": round(self.removed_share, 4),
            "total_flops": self.total_flops,
            "valid": self.valid,
            "note": self.note,
        }


@dataclass(frozen=True)
class GradedPlan:
    """A second, deeper cut under a :class:`CutPlan`, for graded refresh.

    A full refresh also stores ``stored``; a *partial* refresh runs ``partial_nodes`` from the current inputs
    and those stored values, giving the output and fresh values for the shallower cut, so the following hits
    reuse features of this frame while the deep part of the network ran only at the last full refresh.
    """

    name: str
    stored: tuple[str, ...]
    stored_shapes: tuple[tuple[int, ...] | None, ...]
    partial_nodes: frozenset[str]
    total_flops: int
    partial_flops: int

    @property
    def partial_share(self) -> float:
        """Share of a full pass's FLOPs that a partial refresh spends."""
        return self.partial_flops / self.total_flops if self.total_flops else 1.0

    def describe(self) -> dict:
        return {"name": self.name, "stored_shapes": [list(s) if s is not None else None for s in self.stored_shapes],
                "partial_flops_share": round(self.partial_share, 4)}


class _Profiler(fx.Interpreter):
    """Runs the traced graph once on example inputs, recording shape and FLOPs per node."""

    def __init__(self, module: fx.GraphModule):
        super().__init__(module)
        self.info: dict[str, NodeInfo] = {}

    def run_node(self, n: fx.Node):
        with FlopCounterMode(display=False) as counter:
            value = super().run_node(n)
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else None
        resolution = shape[-2] * shape[-1] if shape is not None and len(shape) >= 4 else None
        self.info[n.name] = NodeInfo(n.name, shape, int(counter.get_total_flops()), resolution)
        return value


def _mutates_argument(node: fx.Node, root: torch.nn.Module) -> bool:
    """True when ``node`` writes into its first argument (ReLU(inplace=True), x.add_(...), F.relu(x, inplace=True))."""
    if node.op == "call_module":
        return bool(getattr(root.get_submodule(node.target), "inplace", False))
    if node.kwargs.get("inplace", False):
        return True
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    return isinstance(name, str) and name.endswith("_") and not name.endswith("__")


@dataclass
class GraphAnalysis:
    """The traced graph of a model with per-node shapes and FLOPs, and the cuts it allows."""

    module: fx.GraphModule
    info: dict[str, NodeInfo]
    input_resolution: int | None
    primary_input: str | None = None
    _nodes: dict[str, fx.Node] = field(default_factory=dict)
    _labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, model: torch.nn.Module, example_inputs: tuple) -> "GraphAnalysis":
        try:
            traced = fx.symbolic_trace(model)
        except Exception as exc:  # fx raises many types (TraceError, TypeError, ...) for dynamic code
            raise CutError(
                f"torch.fx could not trace {type(model).__name__}: {exc}. Use the manual path: give the model "
                "reframe_deep(*inputs) -> tuple and reframe_shallow(*inputs, deep) methods and pass cut='manual' "
                "(see README, 'Networks fx cannot trace')."
            ) from exc
        profiler = _Profiler(traced)
        with torch.no_grad():
            profiler.run(*example_inputs)
        placeholders = [n for n in traced.graph.nodes if n.op == "placeholder"]
        # The primary input is the first image-shaped one (the U-Net's x, the SS net's low-res colour):
        # its resolution is "the first level", which every hit must still recompute from it.
        images = [n for n in placeholders if n.name in profiler.info and profiler.info[n.name].resolution is not None]
        analysis = cls(traced, profiler.info, profiler.info[images[0].name].resolution if images else None)
        analysis.primary_input = images[0].name if images else (placeholders[0].name if placeholders else None)
        analysis._nodes = {n.name: n for n in traced.graph.nodes}
        analysis._labels = analysis._module_output_labels()
        return analysis

    def _module_output_labels(self) -> dict[str, str]:
        """node name -> path of the outermost submodule whose single output the node is."""
        members: dict[str, list[fx.Node]] = {}
        for node in self.module.graph.nodes:
            for path in node.meta.get("nn_module_stack", {}):
                members.setdefault(path, []).append(node)
        labels: dict[str, str] = {}
        for path, nodes in members.items():  # outer modules come first in each stack
            names = {n.name for n in nodes}
            outputs = [n for n in nodes if any(u.name not in names for u in n.users)]
            if len(outputs) == 1:
                labels.setdefault(outputs[0].name, path)
        return labels

    def label(self, node_name: str) -> str:
        """A readable name for a node: its submodule path when it is one's output, else the node name."""
        return self._labels.get(node_name, node_name)

    # --- graph walks -----------------------------------------------------------------------------------

    @property
    def nodes(self) -> list[fx.Node]:
        return list(self.module.graph.nodes)

    @property
    def total_flops(self) -> int:
        return sum(i.flops for i in self.info.values())

    def _output(self) -> fx.Node:
        return next(n for n in self.module.graph.nodes if n.op == "output")

    def _hit_path(self, stops: set[str], also: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
        """Walk back from the output (and the nodes ``also`` names), stopping at ``stops``: returns (nodes run,
        nodes stopped at), graph order."""
        hit: set[str] = set()
        cached: set[str] = set()
        pending = list(self._output().all_input_nodes) + [self._nodes[n] for n in also]
        while pending:
            node = pending.pop()
            if node.name in stops:
                cached.add(node.name)
            elif node.name not in hit:
                hit.add(node.name)
                pending.extend(node.all_input_nodes)
        order = [n.name for n in self.module.graph.nodes]
        return [n for n in order if n in hit], [n for n in order if n in cached]

    def _plan(self, name: str, stops: set[str], note: str = "") -> CutPlan:
        hit, cached = self._hit_path(stops)
        hit_flops = sum(self.info[n].flops for n in hit if n in self.info)
        valid, why = self._check(hit, cached)
        return CutPlan(
            name=name,
            cached=tuple(cached),
            cached_shapes=tuple(self.info[n].shape if n in self.info else None for n in cached),
            hit_nodes=frozenset(hit),
            total_flops=self.total_flops,
            hit_flops=hit_flops,
            valid=valid,
            note=why or note,
            cached_labels=tuple(self.label(n) for n in cached),
        )

    def _check(self, hit: list[str], cached: list[str]) -> tuple[bool, str]:
        if not cached:
            return False, "caches nothing: the output does not depend on these tensors"
        hit_set = set(hit)
        live: set[str] = set()  # hit nodes that depend on the primary input through the hit path
        for node in self.module.graph.nodes:
            if node.name not in hit_set:
                continue
            if node.name == self.primary_input or any(a.name in live for a in node.all_input_nodes):
                live.add(node.name)
        if not any(a.name in live for a in self._output().all_input_nodes):
            return False, f"the output would not depend on the current {self.primary_input} on a hit"
        first_level = [
            n for n in live
            if self.info.get(n) and self.info[n].flops > 0
            and (self.input_resolution is None or self.info[n].resolution == self.input_resolution)
        ]
        if not first_level:
            return False, f"a hit would recompute no layer at the resolution of {self.primary_input} from it"
        return True, ""

    # --- candidates ------------------------------------------------------------------------------------

    def level_stops(self, level: int) -> set[str]:
        """Nodes below spatial level ``level`` of the input, plus everything computed only from them."""
        levels = sorted({i.resolution for i in self.info.values()
                         if i.resolution is not None and (self.input_resolution is None or i.resolution <= self.input_resolution)},
                        reverse=True)
        if not levels or level >= len(levels) - 1:
            raise CutError(f"level:{level} does not exist: the network has {max(len(levels) - 1, 0)} levels below the input "
                           f"(valid: {', '.join(f'level:{k}' for k in range(max(len(levels) - 1, 0))) or 'none'})")
        threshold = levels[level]
        stops: set[str] = set()
        # Tensors computed from the inputs by FLOP-free ops alone (a per-frame jitter offset and the sampling
        # grids built from it) are small but current: never stored, always recomputed (they cost nothing).
        # Shapes and sizes read on the way (non-tensor values) do not make a tensor expensive.
        cheap: set[str] = set()
        metadata = {name for name, info in self.info.items() if info.shape is None}  # shapes, sizes, numbers
        for node in self.module.graph.nodes:
            if node.op in ("placeholder", "get_attr"):
                cheap.add(node.name)
                continue
            if node.op == "output":
                continue
            info = self.info.get(node.name)
            if (info is not None and info.shape is not None and info.flops == 0
                    and all(a.name in cheap or a.name in metadata for a in node.all_input_nodes)):
                cheap.add(node.name)
                continue
            res = info.resolution if info is not None else None
            producers = [a for a in node.all_input_nodes if a.op != "get_attr"]
            if (res is not None and res < threshold) or (producers and all(a.name in stops for a in producers)):
                stops.add(node.name)
        return stops

    def candidates(self) -> list[CutPlan]:
        """All distinct cuts, best first (valid before invalid, then by FLOPs removed)."""
        plans: dict[frozenset, CutPlan] = {}
        level = 0
        while True:
            try:
                stops = self.level_stops(level)
            except CutError:
                break
            plan = self._plan(f"level:{level}", stops)
            plans.setdefault(frozenset(plan.cached), plan)
            level += 1
        for node in self.module.graph.nodes:
            is_join = node.op in ("call_function", "call_method") and (
                node.target in _JOIN_TARGETS or node.target in ("add", "mul", "cat"))
            if not is_join:
                continue
            for arg in node.all_input_nodes:
                if arg.op in ("placeholder", "get_attr") or self.info.get(arg.name) is None or self.info[arg.name].shape is None:
                    continue
                plan = self._plan(self.label(arg.name), {arg.name})
                if plan.removed_share > 0:
                    plans.setdefault(frozenset(plan.cached), plan)
        return sorted(plans.values(), key=lambda p: (not p.valid, -p.removed_share, p.name))

    def resolve(self, cut: str | list[str] | tuple[str, ...]) -> CutPlan:
        """The plan for ``cut``: ``"auto"``, ``"level:K"``, a tensor/module name, or a list of names."""
        if cut == "auto":
            valid = [p for p in self.candidates() if p.valid]
            if not valid:
                raise CutError("no valid cut found automatically; name one (reframe-blender cuts lists the candidates) "
                               "or use the manual path")
            best = valid[0]
            return CutPlan(**{**best.__dict__, "note": f"auto: best of {len(valid)} valid candidates"})
        if isinstance(cut, str) and cut.startswith("level:"):
            try:
                level = int(cut.split(":", 1)[1])
            except ValueError:
                raise CutError(f"bad cut {cut!r}: expected level:K with an integer K") from None
            plan = self._plan(cut, self.level_stops(level))
        else:
            names = [cut] if isinstance(cut, str) else list(cut)
            if not names:
                raise CutError("cut names an empty list of tensors")
            plan = self._plan(",".join(names), {self._node_for(name).name for name in names})
        if not plan.valid:
            raise CutError(f"cut {cut!r} is not usable: {plan.note}")
        return plan

    def _node_for(self, name: str) -> fx.Node:
        """A graph node by fx node name, or the single output of a submodule by its path (``up2``, ``enc.1``)."""
        if name in self._nodes and self._nodes[name].op not in ("placeholder", "output", "get_attr"):
            return self._nodes[name]
        inside = [n for n in self.module.graph.nodes if name in n.meta.get("nn_module_stack", {})]
        if not inside:
            known = sorted(p for p, _ in self.module.named_modules() if p)
            raise CutError(f"cut names {name!r}, which is neither a graph node nor a submodule. "
                           f"Submodules: {', '.join(known[:30])}{' ...' if len(known) > 30 else ''}; "
                           "'reframe-blender cuts' lists graph candidates")
        inside_names = {n.name for n in inside}
        outputs = [n for n in inside if any(u.name not in inside_names for u in n.users)]
        if len(outputs) != 1:
            raise CutError(f"submodule {name!r} has {len(outputs)} outputs ({', '.join(n.name for n in outputs)}); "
                           "name the tensors instead")
        return outputs[0]

    # --- graded refresh ----------------------------------------------------------------------------------

    def stops_for(self, cut: str | list[str] | tuple[str, ...]) -> set[str]:
        """The raw stop set of a cut (``level:K`` or tensor names), before the walk from the output."""
        if isinstance(cut, str) and cut.startswith("level:"):
            try:
                return self.level_stops(int(cut.split(":", 1)[1]))
            except ValueError:
                raise CutError(f"bad cut {cut!r}: expected level:K with an integer K") from None
        names = [cut] if isinstance(cut, str) else list(cut)
        return {self._node_for(name).name for name in names}

    def graded(self, inner: CutPlan, deeper: str) -> "GradedPlan":
        """A partial refresh under ``inner``: recompute the values ``inner`` caches (and the output) from the
        current inputs while reusing what the ``deeper`` cut stores. Raises :class:`CutError` when ``deeper``
        is not deeper than ``inner`` (it would store what ``inner`` stores, or recompute the whole network)."""
        runs, stored = self._hit_path(self.stops_for(deeper), also=tuple(inner.cached))
        hit = set(runs)
        partial_flops = sum(self.info[n].flops for n in hit if n in self.info)
        if not stored or set(stored) == set(inner.cached):
            raise CutError(f"cut {deeper!r} is not deeper than {inner.name!r}: it stores the same values, so a "
                           "partial refresh would be a hit; name a deeper one (level:K with a larger K)")
        on_hit_path = sorted(set(stored) & inner.hit_nodes)
        if on_hit_path:
            raise CutError(f"cut {deeper!r} is not under {inner.name!r}: it would store {', '.join(self.label(n) for n in on_hit_path)}, "
                           "which every hit recomputes from the current inputs, so a partial refresh would reuse them "
                           "stale; name a cut inside what the cache stores (level:K)")
        if partial_flops >= self.total_flops or partial_flops <= inner.hit_flops:
            raise CutError(f"cut {deeper!r} saves nothing as a partial refresh under {inner.name!r} "
                           f"({partial_flops} of {self.total_flops} FLOPs; a hit runs {inner.hit_flops})")
        return GradedPlan(
            name=deeper if isinstance(deeper, str) else ",".join(deeper),
            stored=tuple(stored),
            stored_shapes=tuple(self.info[n].shape if n in self.info else None for n in stored),
            partial_nodes=frozenset(hit),
            total_flops=self.total_flops,
            partial_flops=partial_flops,
        )

    def auto_graded(self, inner: CutPlan) -> "GradedPlan":
        """The shallowest ``level:K`` that makes a partial refresh under ``inner``."""
        level, tried = 0, []
        while True:
            try:
                self.level_stops(level)
            except CutError:
                break
            try:
                return self.graded(inner, f"level:{level}")
            except CutError as exc:
                tried.append(f"level:{level} ({exc})")
            level += 1
        raise CutError(f"no level:K cut of this network is deeper than {inner.name!r}, so it has no partial refresh; "
                       f"tried: {'; '.join(tried) or 'none'}. Use a single-grade policy (no '/')")

    def build_full_graded(self, inner: CutPlan, graded: "GradedPlan") -> fx.GraphModule:
        """The original computation returning ``(output, [inner's cached values] + [graded.stored values])``."""
        both = CutPlan(**{**inner.__dict__, "cached": tuple(inner.cached) + tuple(n for n in graded.stored if n not in inner.cached)})
        return self.build_full(both)

    def build_partial(self, inner: CutPlan, graded: "GradedPlan") -> fx.GraphModule:
        """``forward(*inputs, *graded.stored) -> (output, [inner's cached values])``: the partial refresh."""
        graph = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        run = graded.partial_nodes
        for node in self.module.graph.nodes:
            if node.op == "placeholder":
                env[node] = graph.node_copy(node, lambda a: env[a])
        stored_values = []
        for index, name in enumerate(graded.stored):
            source = self._nodes[name]
            value = graph.placeholder(f"stored_{index}")
            stored_values.append(value)
            mutated = any(u.name in run and _mutates_argument(u, self.module) and u.args and u.args[0] is source
                          for u in source.users)
            env[source] = graph.call_method("clone", (value,)) if mutated else value
        wanted = set(inner.cached)
        captured: dict[str, fx.Node] = {}
        for index, name in enumerate(graded.stored):
            if name in wanted:  # stored by the full refresh and passed on as it is (not the copy in-place ops may change)
                captured[name] = stored_values[index]
        for node in self.module.graph.nodes:
            if node.op == "output":
                graph.output((fx.map_arg(node.args[0], lambda a: env[a]), [captured[n] for n in inner.cached]))
            elif node.op != "placeholder" and node.name in run:
                env[node] = graph.node_copy(node, lambda a: env[a])
                if node.name in wanted:
                    # As in build_full: a later in-place op would overwrite what is stored, so keep a copy then.
                    mutated = any(u.name in run and _mutates_argument(u, self.module) and u.args and u.args[0] is node
                                  for u in node.users)
                    captured[node.name] = graph.call_method("clone", (env[node],)) if mutated else env[node]
        return fx.GraphModule(self.module, graph, class_name="PartialRefreshPass")

    # --- executable graphs -----------------------------------------------------------------------------

    def build_full(self, plan: CutPlan) -> fx.GraphModule:
        """The original computation, returning ``(output, [cached values])``."""
        graph = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        captured: dict[str, fx.Node] = {}
        wanted = set(plan.cached)
        for node in self.module.graph.nodes:
            if node.op == "output":
                out = fx.map_arg(node.args[0], lambda a: env[a])
                graph.output((out, [captured[n] for n in plan.cached]))
                continue
            env[node] = graph.node_copy(node, lambda a: env[a])
            if node.name in wanted:
                # A later in-place op (ReLU(inplace=True)) would overwrite what we store: keep a copy then.
                mutated = any(_mutates_argument(u, self.module) and u.args and u.args[0] is node for u in node.users)
                captured[node.name] = graph.call_method("clone", (env[node],)) if mutated else env[node]
        return fx.GraphModule(self.module, graph, class_name="RefreshPass")

    def build_hit(self, plan: CutPlan) -> fx.GraphModule:
        """Only the hit path: ``forward(*inputs, *cached) -> output``."""
        graph = fx.Graph()
        env: dict[fx.Node, fx.Node] = {}
        hit = plan.hit_nodes
        for node in self.module.graph.nodes:
            if node.op == "placeholder":
                env[node] = graph.node_copy(node, lambda a: env[a])
        for index, name in enumerate(plan.cached):
            source = self._nodes[name]
            value = graph.placeholder(f"cached_{index}")
            mutated = any(u.name in hit and _mutates_argument(u, self.module) and u.args and u.args[0] is source
                          for u in source.users)
            # Never let the hit path write into the cache itself.
            env[source] = graph.call_method("clone", (value,)) if mutated else value
        for node in self.module.graph.nodes:
            if node.op == "output":
                graph.output(fx.map_arg(node.args[0], lambda a: env[a]))
            elif node.op != "placeholder" and node.name in hit:
                env[node] = graph.node_copy(node, lambda a: env[a])
        return fx.GraphModule(self.module, graph, class_name="HitPass")

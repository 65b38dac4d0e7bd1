"""An XGBoost booster as plain C: flat ``static const`` node tables and one loop that walks them.

Written from the booster's own JSON (not from TL2cgen: TL2cgen 1.0.0 bundles Treelite 4.1.2, which reads
XGBoost 3.x's per-target ``base_score`` wrongly - off by up to 0.11 on a 20-joint model - and its
if-else code took 129 s of gcc for a 60-round model here; ``docs/edge-export.md``). Tables instead of
branches compile in seconds, live in flash on a microcontroller, need no heap and no libc beyond
``expf`` (classification only), and give the same float32 sums as XGBoost's CPU predictor: the base
score, then each tree's leaf in tree order, ``x < threshold`` goes left, NaN follows ``default_left``.

Both the compiled serving backend (:mod:`emgpose.train.compiled`) and the edge export
(:mod:`emgpose.export_c`) use :func:`render_booster`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from emgpose.errors import InvalidInput

GENERATOR = "emgpose.ccode/1"  # part of the compiled cache key: bump when the C changes
LINKS = {"reg:squarederror": "identity", "reg:pseudohubererror": "identity", "multi:softprob": "softmax"}


@dataclass(frozen=True)
class Forest:
    """The booster flattened: node ``i`` splits on ``feature[i]`` (-1: a leaf whose values start at
    ``leaf[i] * leaf_size`` of ``leaves``), children ``left[i]``/``right[i]`` are absolute indices."""

    num_features: int
    num_outputs: int
    link: str  # "identity" or "softmax"
    base: np.ndarray  # (num_outputs,) float32 margin every row starts from
    roots: np.ndarray  # (trees,) first node of each tree
    groups: np.ndarray  # (trees,) first output each tree adds to
    leaf_size: int  # outputs one leaf carries: 1, or num_outputs for multi_output_tree models
    feature: np.ndarray
    threshold: np.ndarray  # float32
    left: np.ndarray
    right: np.ndarray
    default_left: np.ndarray
    leaf: np.ndarray  # index into leaves (in units of leaf_size), -1 for splits
    leaves: np.ndarray  # float32

    @property
    def table_bytes(self) -> int:
        """Bytes of the node and leaf tables at the integer widths :func:`render_booster` picks."""
        index = _ctype(max(len(self.feature), len(self.leaves)))[1]
        per_node = 4 + 3 * index + 1 + _ctype(self.num_features)[1]
        return len(self.feature) * per_node + 4 * len(self.leaves) + 4 * len(self.base) + 8 * len(self.roots)


def _base_score(text: str, outputs: int) -> np.ndarray:
    values = [float(v) for v in text.strip("[]").split(",") if v.strip()]
    base = np.asarray(values * outputs if len(values) == 1 else values, dtype=np.float32)
    if base.shape != (outputs,):
        raise InvalidInput(f"booster base_score {text!r} does not hold one value per output ({outputs})")
    return base


def flatten(booster: xgb.Booster) -> Forest:
    """The booster's trees as :class:`Forest` tables; refuses what the C cannot reproduce."""
    learner = json.loads(bytes(booster.save_raw("json")))["learner"]
    objective = learner["objective"]["name"]
    if objective not in LINKS:
        raise InvalidInput(f"booster objective {objective!r} cannot be exported to C (supported: {sorted(LINKS)})")
    param = learner["learner_model_param"]
    outputs = max(int(param["num_class"]), int(param["num_target"]), 1)
    model = learner["gradient_booster"]["model"]
    if learner["gradient_booster"]["name"] != "gbtree":
        raise InvalidInput(f"booster {learner['gradient_booster']['name']!r} is not a tree booster (gbtree)")
    feature, threshold, left, right, default, leaf, leaves = [], [], [], [], [], [], []
    roots, leaf_size = [], 1
    for tree in model["trees"]:
        if any(tree["split_type"]):
            raise InvalidInput("booster has categorical splits, which the C export does not support")
        size = int(tree["tree_param"]["size_leaf_vector"])
        leaf_size = max(size, 1)
        start, kids = len(feature), tree["left_children"]
        roots.append(start)
        vector = tree.get("leaf_weights")
        for i, child in enumerate(kids):
            if child == -1:  # a leaf: scalar value in split_conditions, or row right_children[i] of leaf_weights
                feature.append(-1)
                left.append(0)
                right.append(0)
                threshold.append(0.0)
                leaf.append(len(leaves) // leaf_size)
                at = int(tree["right_children"][i]) * leaf_size
                leaves.extend(vector[at : at + leaf_size] if size > 1 else [tree["split_conditions"][i]])
            else:
                feature.append(int(tree["split_indices"][i]))
                threshold.append(tree["split_conditions"][i])
                left.append(start + child)
                right.append(start + int(tree["right_children"][i]))
                leaf.append(-1)
            default.append(int(tree["default_left"][i]))
    groups = [0] * len(roots) if leaf_size > 1 else [int(g) for g in model["tree_info"]]
    return Forest(
        num_features=int(param["num_feature"]),
        num_outputs=outputs,
        link=LINKS[objective],
        base=_base_score(param["base_score"], outputs),
        roots=np.asarray(roots, dtype=np.int64),
        groups=np.asarray(groups, dtype=np.int64),
        leaf_size=leaf_size,
        feature=np.asarray(feature, dtype=np.int64),
        threshold=np.asarray(threshold, dtype=np.float32),
        left=np.asarray(left, dtype=np.int64),
        right=np.asarray(right, dtype=np.int64),
        default_left=np.asarray(default, dtype=np.uint8),
        leaf=np.asarray(leaf, dtype=np.int64),
        leaves=np.asarray(leaves, dtype=np.float32),
    )


def _ctype(limit: int, signed: bool = False) -> tuple[str, int]:
    """The narrowest C integer type holding ``-1 .. limit`` (signed) or ``0 .. limit``."""
    for bits in (16, 32):
        if limit < 2 ** (bits - 1 if signed else bits):
            return (f"int{bits}_t" if signed else f"uint{bits}_t"), bits // 8
    return ("int64_t" if signed else "uint64_t"), 8


def _floats(values: np.ndarray) -> str:
    """Exact float32 literals (C99 hex floats), so C compares and adds the very same numbers."""
    return ",".join(f"{float(v).hex()}f" for v in np.asarray(values, dtype=np.float32))


def _ints(values: np.ndarray) -> str:
    return ",".join(str(int(v)) for v in values)


def _table(ctype: str, name: str, body: str) -> str:
    return f"static const {ctype} {name}[] = {{{body}}};\n"


def render_booster(forest: Forest, prefix: str = "emgpose") -> str:
    """C99 source defining ``void <prefix>_booster(const float *x, float *out)`` (one row: the raw output,
    as XGBoost's ``inplace_predict`` gives it) and ``<prefix>_booster_rows(x, n, out)`` (``n`` rows)."""
    index, _ = _ctype(max(len(forest.feature), len(forest.leaves)))
    feat, _ = _ctype(forest.num_features, signed=True)
    # A leaf keeps its leaf-table row in `left` (its children are never read), so one array serves both.
    left = np.where(forest.leaf >= 0, forest.leaf, forest.left)
    softmax = forest.link == "softmax"
    lines = [
        f"/* Generated by {GENERATOR} from an XGBoost booster: {len(forest.roots)} trees, "
        f"{len(forest.feature)} nodes. Do not edit. */\n",
        "#include <stdint.h>\n",
        "#include <math.h>\n" if softmax else "",
        f"#define N_TREES {len(forest.roots)}\n#define N_OUT {forest.num_outputs}\n",
        f"#define LEAF_SIZE {forest.leaf_size}\n",
        _table("float", "base", _floats(forest.base)),
        _table(index, "roots", _ints(forest.roots)),
        _table("uint16_t" if forest.num_outputs < 65536 else "uint32_t", "groups", _ints(forest.groups)),
        _table(feat, "feature", _ints(forest.feature)),
        _table("float", "threshold", _floats(forest.threshold)),
        _table(index, "left", _ints(left)),
        _table(index, "right", _ints(forest.right)),
        _table("uint8_t", "default_left", _ints(forest.default_left)),
        _table("float", "leaves", _floats(forest.leaves)),
        _BODY.replace("PREFIX", prefix).replace("INDEX", index).replace("LINK", _SOFTMAX if softmax else ""),
    ]
    return "".join(lines)


_SOFTMAX = """
    float top = out[0], sum = 0.0f;
    for (int k = 1; k < N_OUT; ++k) top = out[k] > top ? out[k] : top;
    for (int k = 0; k < N_OUT; ++k) { out[k] = expf(out[k] - top); sum += out[k]; }
    for (int k = 0; k < N_OUT; ++k) out[k] /= sum;"""

# Rows go through in blocks, tree by tree (as XGBoost's CPU predictor does): a tree's nodes stay in cache
# for the block. Each row still adds its leaves in tree order, so the sums are the same.
_BODY = """
#define BLOCK 64
static INDEX leaf_of(INDEX node, const float *x) {
    while (feature[node] >= 0) {
        float v = x[feature[node]];
        int go_left = (v != v) ? default_left[node] : (v < threshold[node]);
        node = go_left ? left[node] : right[node];
    }
    return node;
}

static void add_leaf(INDEX node, float *out) {
    const float *value = leaves + (uint32_t)left[node] * LEAF_SIZE;
    for (int k = 0; k < LEAF_SIZE; ++k) out[k] += value[k];
}

static void apply_link(float *out) {(void)out;LINK
}

void PREFIX_booster_rows(const float *x, long n, int num_features, float *out) {
    for (long first = 0; first < n; first += BLOCK) {
        long end = first + BLOCK < n ? first + BLOCK : n;
        for (long i = first; i < end; ++i)
            for (int k = 0; k < N_OUT; ++k) out[i * N_OUT + k] = base[k];
        for (int t = 0; t < N_TREES; ++t)
            for (long i = first; i < end; ++i)
                add_leaf(leaf_of(roots[t], x + i * num_features), out + i * N_OUT + groups[t]);
        for (long i = first; i < end; ++i) apply_link(out + i * N_OUT);
    }
}

void PREFIX_booster(const float *x, float *out) {
    PREFIX_booster_rows(x, 1, 0, out);
}
"""

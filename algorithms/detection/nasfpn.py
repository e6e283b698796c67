"""NAS-FPN (Ghiasi, Lin, Pang, Le: "NAS-FPN: Learning Scalable Feature Pyramid Architecture for Object
Detection", CVPR 2019) as a Keras 3 layer: the searched merging cell, stacked `num_repeats` times.

No installed library has it (KerasHub 0.32 has FPN only; Model Garden's is Keras 2), so it is written here
after the paper's cell graph as Model Garden expresses it (official/vision/modeling/decoders/nasfpn.py).
"""

import keras
from keras import ops

# The searched cell for pyramid levels 3-7: (output level, how the two inputs are merged, indices of the
# two inputs in the growing node list, whether the node is one of the cell's outputs). Nodes 0-4 are the
# cell's inputs P3-P7; every block appends one node.
CELL_BLOCKS = (
    (4, "attention", (1, 3), False),
    (4, "sum", (1, 5), False),
    (3, "sum", (0, 6), True),
    (4, "sum", (6, 7), True),
    (5, "attention", (7, 8), True),
    (7, "attention", (6, 9), True),
    (6, "attention", (9, 10), True),
)
MIN_LEVEL, MAX_LEVEL = 3, 7
BACKBONE_LEVELS = (3, 4, 5)  # the rest (P6, P7) are pooled from P5
BATCH_NORM_MOMENTUM = 0.997
BATCH_NORM_EPSILON = 1e-4


def _cell_plan():
    """Static dataflow of one cell: per block, the extra nodes added as residuals, and the output nodes.

    A node that no later block consumed and that has the new node's level is added to an output node
    (the cell's residual connections); the last five nodes are the cell's outputs P3-P7.
    """
    levels = list(range(MIN_LEVEL, MAX_LEVEL + 1))
    consumers = [0] * len(levels)
    residuals = []
    for level, _, inputs, is_output in CELL_BLOCKS:
        for index in inputs:
            consumers[index] += 1
        added = []
        if is_output:
            for index, (node_level, count) in enumerate(zip(levels, consumers)):
                if count == 0 and node_level == level:
                    added.append(index)
                    consumers[index] += 1
        residuals.append(tuple(added))
        levels.append(level)
        consumers.append(0)
    outputs = {levels[i]: i for i in range(len(levels) - (MAX_LEVEL - MIN_LEVEL + 1), len(levels))}
    return tuple(residuals), tuple(levels), outputs


class NASFPN(keras.layers.Layer):
    """{"P3": c3, "P4": c4, "P5": c5} backbone features -> {"P3", ..., "P7"}, each with `num_filters` channels.

    P6 and P7 come from max-pooling P5. Inside a cell, inputs are brought to the block's level by max
    pooling (finer inputs) or nearest-neighbour upsampling (coarser), merged by a sum or by global attention
    (the coarser input plus the other one gated by the sigmoid of the coarser input's global max), and followed by ReLU, a 3x3 convolution and batch normalisation.
    """

    def __init__(self, num_filters: int = 256, num_repeats: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.num_filters = num_filters
        self.num_repeats = num_repeats
        self.residuals, self.node_levels, self.output_nodes = _cell_plan()
        norm = dict(momentum=BATCH_NORM_MOMENTUM, epsilon=BATCH_NORM_EPSILON)
        self.lateral_convs = [keras.layers.Conv2D(num_filters, 1, padding="same", name=f"lateral_P{level}")
                              for level in BACKBONE_LEVELS]
        self.lateral_norms = [keras.layers.BatchNormalization(**norm, name=f"lateral_norm_P{level}")
                              for level in BACKBONE_LEVELS]
        self.block_convs = [[keras.layers.Conv2D(num_filters, 3, padding="same", use_bias=False,
                                                 name=f"cell{r}_block{b}_conv") for b in range(len(CELL_BLOCKS))]
                            for r in range(num_repeats)]
        self.block_norms = [[keras.layers.BatchNormalization(**norm, name=f"cell{r}_block{b}_norm")
                             for b in range(len(CELL_BLOCKS))] for r in range(num_repeats)]

    @staticmethod
    def _resample(feature, level: int, target_level: int):
        if level < target_level:
            stride = 2 ** (target_level - level)
            return ops.max_pool(feature, pool_size=stride + 1, strides=stride, padding="same")
        if level > target_level:
            factor = 2 ** (level - target_level)
            return ops.repeat(ops.repeat(feature, factor, axis=1), factor, axis=2)
        return feature

    @staticmethod
    def _global_attention(coarse, other):
        return coarse + other * ops.sigmoid(ops.max(coarse, axis=(1, 2), keepdims=True))

    def _cell(self, nodes: list, repeat: int, training) -> list:
        nodes = list(nodes)
        levels = list(self.node_levels)
        for b, (level, merge, (i, j), _) in enumerate(CELL_BLOCKS):
            first = self._resample(nodes[i], levels[i], level)
            second = self._resample(nodes[j], levels[j], level)
            if merge == "sum":
                node = first + second
            elif levels[i] >= levels[j]:
                node = self._global_attention(first, second)
            else:
                node = self._global_attention(second, first)
            for index in self.residuals[b]:
                node = node + nodes[index]
            node = self.block_convs[repeat][b](ops.relu(node))
            nodes.append(self.block_norms[repeat][b](node, training=training))
        return [nodes[self.output_nodes[level]] for level in range(MIN_LEVEL, MAX_LEVEL + 1)]

    def call(self, features: dict, training=None) -> dict:
        nodes = [norm(conv(features[f"P{level}"]), training=training)
                 for level, conv, norm in zip(BACKBONE_LEVELS, self.lateral_convs, self.lateral_norms)]
        for level in (6, 7):
            nodes.append(self._resample(nodes[-1], level - 1, level))
        for repeat in range(self.num_repeats):
            nodes = self._cell(nodes, repeat, training)
        return {f"P{level}": node for level, node in zip(range(MIN_LEVEL, MAX_LEVEL + 1), nodes)}

    def get_config(self):
        return {**super().get_config(), "num_filters": self.num_filters, "num_repeats": self.num_repeats}

"""Parameter names and shapes of the authors' released networks (renyulin-f/MambaCSR ``mambacsr_arch.py`` and
csguoh/MambaIR), written out from their module definitions, for the converter tests."""

C, D, N, R = 180, 360, 16, 12


def _ss2d(prefix, K, gate=True, top_level=False):
    p = prefix if top_level else prefix + "self_attention."
    shapes = {
        p + "out_norm.weight": (D,), p + "out_norm.bias": (D,),
        p + "in_proj.weight": (2 * D, C),
        p + "conv2d.weight": (D, 1, 3, 3), p + "conv2d.bias": (D,),
        p + "x_proj_weight": (K, R + 2 * N, D),
        p + "dt_projs_weight": (K, D, R), p + "dt_projs_bias": (K, D),
        p + "A_logs": (K * D, N), p + "Ds": (K * D,),
        p + "out_proj.weight": (C, D),
    }
    if gate:
        a = p + "multi_scan.attn."
        shapes.update({a + "norm.weight": (D,), a + "norm.bias": (D,),
                       a + "global_reduce.weight": (45, D), a + "global_reduce.bias": (45,),
                       a + "channel_select.weight": (D, 45), a + "channel_select.bias": (D,)})
    return shapes


def _cab(prefix, hidden, squeeze):
    return {prefix + "0.weight": (hidden, C, 3, 3), prefix + "0.bias": (hidden,),
            prefix + "2.weight": (C, hidden, 3, 3), prefix + "2.bias": (C,),
            prefix + "3.attention.1.weight": (squeeze, C, 1, 1), prefix + "3.attention.1.bias": (squeeze,),
            prefix + "3.attention.3.weight": (C, squeeze, 1, 1), prefix + "3.attention.3.bias": (C,)}


def _rlmb(prefix):
    shapes = {prefix + "ln_1.weight": (C,), prefix + "ln_1.bias": (C,), prefix + "skip_scale": (C,),
              prefix + "ln_2.weight": (C,), prefix + "ln_2.bias": (C,), prefix + "skip_scale2": (C,),
              prefix + "mlp.fc1.weight": (2 * C, C), prefix + "mlp.fc1.bias": (2 * C,),
              prefix + "mlp.fc2.weight": (C, 2 * C), prefix + "mlp.fc2.bias": (C,)}
    shapes.update(_ss2d(prefix, 2))
    shapes.update(_cab(prefix + "conv_block.cab.", 7, 7))
    return shapes


def _mambair_block(prefix):
    shapes = {prefix + "ln_1.weight": (C,), prefix + "ln_1.bias": (C,), prefix + "skip_scale": (C,),
              prefix + "ln_2.weight": (C,), prefix + "ln_2.bias": (C,), prefix + "skip_scale2": (C,)}
    shapes.update(_ss2d(prefix, 4, gate=False))
    shapes.update(_cab(prefix + "conv_blk.cab.", 60, 6))
    return shapes


def _group(prefix, block):
    shapes = {prefix + "conv.weight": (C, C, 3, 3), prefix + "conv.bias": (C,)}
    for i in range(6):
        shapes.update(block(f"{prefix}residual_group.blocks.{i}."))
    return shapes


def _common():
    return {"conv_first.weight": (C, 3, 3, 3), "conv_first.bias": (C,),
            "patch_embed.norm.weight": (C,), "patch_embed.norm.bias": (C,),
            "norm.weight": (C,), "norm.bias": (C,),
            "conv_after_body.weight": (C, C, 3, 3), "conv_after_body.bias": (C,),
            "conv_before_upsample.0.weight": (64, C, 3, 3), "conv_before_upsample.0.bias": (64,),
            "upsample.0.weight": (256, 64, 3, 3), "upsample.0.bias": (256,),
            "upsample.2.weight": (256, 64, 3, 3), "upsample.2.bias": (256,),
            "conv_last.weight": (3, 64, 3, 3), "conv_last.bias": (3,)}


def released_mambacsr_shapes(cross_scale=True):
    shapes = _common()
    for g in range(6):
        shapes.update(_group(f"layers.{g}.", _rlmb))
    if cross_scale:
        shapes.update({"patch_embed2.norm.weight": (C,), "patch_embed2.norm.bias": (C,)})
        shapes.update(_group("layers2.0.", _rlmb))
        p = "layers3.0."
        shapes.update(_ss2d(p, 4, top_level=True))
        shapes.update({p + "in_proj_down.weight": (2 * D, C), p + "conv2d2.weight": (D, 1, 3, 3),
                       p + "conv2d2.bias": (D,), p + "ln_1.weight": (C,), p + "ln_1.bias": (C,),
                       p + "ln_2.weight": (C,), p + "ln_2.bias": (C,), p + "skip_scale": (C,),
                       p + "skip_scale2": (C,), p + "mlp.fc1.weight": (4 * C, C), p + "mlp.fc1.bias": (4 * C,),
                       p + "mlp.fc2.weight": (C, 4 * C), p + "mlp.fc2.bias": (C,)})
    return shapes


def released_mambair_shapes():
    shapes = _common()
    for g in range(6):
        shapes.update(_group(f"layers.{g}.", _mambair_block))
    return shapes

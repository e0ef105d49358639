"""Small network configurations that run in well under a second on the CPU."""

from mambacsr.models import MambaCSR, MambaIR


def tiny_mambacsr(mode="aligned", cross_scale=True, depths=(2, 2), low_depth=2, released_layout=False, **kw):
    return MambaCSR(embed_dim=12, depths=depths, d_state=4, drop_path_rate=0.0,
                    scan_pattern=dict(local_window=4, global_window=8),
                    cross_scale=dict(enabled=cross_scale, mode=mode, directions=["w4", "w4_flip", "c_w4", "c_w4_flip"],
                                     low_depth=low_depth, released_layout=released_layout),
                    **kw)


def tiny_mambair(**kw):
    return MambaIR(embed_dim=12, depths=(2,), d_state=4, drop_path_rate=0.0, **kw)

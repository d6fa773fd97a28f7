"""Small model configurations shared by the tests (fast to build and run).

Each is a dict of ``model_config("sam_vit_b", **CONFIG)`` overrides; the names say what the
configuration is. Token grids are ``input_size / encoder_patch_size`` (patch 16 unless given).
"""

# A complete SAM at 64 x 64 input: patch 8, width 32, two encoder blocks, decoder width 32.
TINY = dict(
    input_size=(64, 64),
    encoder_patch_size=8,
    encoder_embed_dim=32,
    encoder_nb_blocks=2,
    encoder_nb_heads=2,
    encoder_global_attn_indices=(1,),
    encoder_window_size=4,
    embed_dim=32,
    decoder_nb_heads=2,
    decoder_mlp_channels=64,
    decoder_iou_hidden_dim=32,
)

# TINY with lists for tuples: its values are JSON, for ``--override key=value`` on the CLI.
TINY_JSON = {k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}

# 64 x 64 input at patch 16 (4 x 4 tokens) with window 3, so window blocks pad 4 -> 6;
# width 32, two encoder blocks, decoder width 32.
TINY_PADDED_WINDOWS = dict(
    input_size=(64, 64),
    encoder_embed_dim=32,
    encoder_nb_blocks=2,
    encoder_nb_heads=2,
    encoder_global_attn_indices=(1,),
    encoder_window_size=3,
    embed_dim=32,
    decoder_mlp_channels=64,
    decoder_nb_heads=2,
    decoder_iou_hidden_dim=32,
)

# A narrow encoder (width 32, two blocks, window 4: 8 x 8 tokens, no padding) at 128 x 128
# input, with SAM's full-size (width 256) prompt encoder and mask decoder.
NARROW_ENCODER_128 = dict(
    input_size=(128, 128),
    encoder_embed_dim=32,
    encoder_nb_blocks=2,
    encoder_nb_heads=2,
    encoder_global_attn_indices=(1,),
    encoder_window_size=4,
)

# NARROW_ENCODER_128 with window 3: 8 x 8 tokens, window blocks pad 8 -> 9.
NARROW_ENCODER_128_PADDED_WINDOWS = dict(NARROW_ENCODER_128, encoder_window_size=3)

# One global-attention encoder block of width 32 at 128 x 128 input; full-size decoder.
ONE_BLOCK_128 = dict(
    input_size=(128, 128),
    encoder_embed_dim=32,
    encoder_nb_blocks=1,
    encoder_nb_heads=2,
    encoder_global_attn_indices=(0,),
)

# For parity with Meta's model: 256 x 256 input (16 x 16 tokens), width 64, three blocks,
# window 5 so window blocks pad 16 -> 20; full-size decoder.
PARITY_256 = dict(
    input_size=(256, 256),
    encoder_embed_dim=64,
    encoder_nb_blocks=3,
    encoder_nb_heads=2,
    encoder_global_attn_indices=(1,),
    encoder_window_size=5,
)

# One global-attention block of SAM's full width (768) at 128 x 128 input: the stack
# benchmark's smoke run (an 8 x 8 x 256 embedding).
ONE_WIDE_BLOCK_128 = dict(
    input_size=(128, 128),
    encoder_nb_blocks=1,
    encoder_global_attn_indices=(0,),
)

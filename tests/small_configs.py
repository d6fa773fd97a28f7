"""Small model configurations shared by the tests (fast to build and run)."""

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

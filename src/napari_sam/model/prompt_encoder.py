"""SAM's prompt encoder: points, boxes and masks to sparse and dense embeddings."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from .layers import conv, embedding_init, gelu, norm_layer_factory


class PositionEmbeddingRandom(keras.layers.Layer):
    """Positional encoding using random spatial frequencies (a fixed Gaussian matrix)."""

    def __init__(self, num_pos_feats: int, **kwargs):
        super().__init__(**kwargs)
        self.positional_encoding_gaussian_matrix = self.add_weight(
            (2, num_pos_feats), embedding_init(), trainable=False,
            name="positional_encoding_gaussian_matrix",
        )  # fmt: skip
        self.built = True

    def encode(self, coords):
        """Encode coordinates normalised to [0, 1] (..., 2) -> (..., 2 * num_pos_feats)."""
        coords = (2.0 * coords - 1.0) @ self.positional_encoding_gaussian_matrix
        coords = (2.0 * math.pi) * coords
        return tf.concat([tf.sin(coords), tf.cos(coords)], axis=-1)

    def grid(self, size):
        """Dense encoding of an (h, w) grid of pixel centres -> (h, w, C)."""
        h, w = size
        y = (tf.range(h, dtype=tf.float32) + 0.5) / h
        x = (tf.range(w, dtype=tf.float32) + 0.5) / w
        yy, xx = tf.meshgrid(y, x, indexing="ij")
        return self.encode(tf.stack([xx, yy], axis=-1))

    def with_coords(self, coords, image_size):
        """Encode pixel coordinates (x, y) in an image of ``image_size`` (h, w)."""
        return self.encode(coords / tf.constant([image_size[1], image_size[0]], coords.dtype))


class PromptEncoder(keras.layers.Layer):
    """Encodes prompts for the mask decoder.

    Sparse embeddings (N, M, D) hold the points (padded with a "not a point" token when no
    box is given), then two corner tokens per box. Dense embeddings (N, H'', W'', D) come
    from the mask prompt, or the learned "no mask" embedding when there is none.
    """

    def __init__(self, embed_dim: int, mask_hidden_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim = embed_dim
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2, name="pe_layer")
        self.point_embeddings = [
            self.add_weight((1, embed_dim), embedding_init(), name=f"point_embeddings_{i}")
            for i in range(4)  # positive point, negative point, box corner 1, box corner 2
        ]
        self.not_a_point_embed = self.add_weight(
            (1, embed_dim), embedding_init(), name="not_a_point_embed"
        )
        self.no_mask_embed = self.add_weight((1, embed_dim), embedding_init(), name="no_mask_embed")
        norm = norm_layer_factory("layer_norm_eps_1e-6")
        h4 = mask_hidden_dim // 4
        self.mask_conv1 = conv(h4, 1, 2, 2, name="mask_conv1")
        self.mask_norm1 = norm(h4, "mask_norm1")
        self.mask_conv2 = conv(mask_hidden_dim, h4, 2, 2, name="mask_conv2")
        self.mask_norm2 = norm(mask_hidden_dim, "mask_norm2")
        self.mask_conv3 = conv(embed_dim, mask_hidden_dim, 1, name="mask_conv3")
        self.built = True

    def dense_pe(self, grid):
        """Positional encoding of the image embedding grid, (H'', W'', D)."""
        return self.pe_layer.grid(grid)

    def embed_points(self, points, labels, pad, image_size):
        """Embed points (N, M1, 2) with labels (N, M1); ``pad`` adds the padding point."""
        points = points + 0.5  # shift to the centre of the pixel
        n = tf.shape(points)[0]
        n_pad = tf.cast(pad, tf.int32)
        points = tf.concat([points, tf.zeros((n, n_pad, 2), points.dtype)], axis=1)
        labels = tf.concat([labels, -tf.ones((n, n_pad), labels.dtype)], axis=1)
        emb = self.pe_layer.with_coords(points, image_size)
        labels = labels[..., None]
        emb = tf.where(labels == -1, tf.zeros_like(emb), emb)
        for value, weight in ((-1, self.not_a_point_embed),) + tuple(
            zip((0, 1), self.point_embeddings[:2], strict=True)
        ):
            emb = emb + tf.cast(labels == value, emb.dtype) * weight
        return emb

    def embed_boxes(self, boxes, image_size):
        """Embed boxes (N, M2, 4) as two corner tokens each -> (N, 2 * M2, D)."""
        n = tf.shape(boxes)[0]
        corners = tf.reshape(boxes + 0.5, (n, -1, 2, 2))
        emb = self.pe_layer.with_coords(corners, image_size)
        emb = emb + tf.concat(self.point_embeddings[2:], axis=0)
        return tf.reshape(emb, (n, -1, self.embed_dim))

    def embed_masks(self, masks):
        """Embed mask prompts (N, H', W', 1) -> (N, H'', W'', D)."""
        x = gelu(self.mask_norm1(self.mask_conv1(masks)))
        x = gelu(self.mask_norm2(self.mask_conv2(x)))
        return self.mask_conv3(x)

    def call(self, points, labels, boxes, masks, image_size, grid):
        """Embed a batch of prompts.

        Parameters
        ----------
        points, labels : Tensor
            (N, M1, 2) pixel coordinates (x, y) in the model input and (N, M1) labels
            (1 foreground, 0 background, -1 ignore). M1 may be 0.
        boxes : Tensor
            (N, M2, 4) boxes (x0, y0, x1, y1) in the model input. M2 may be 0.
        masks : Tensor
            (N, M3, H', W') mask logits with M3 in {0, 1}.
        image_size, grid : tuple of int
            Model input size (H, W) and embedding grid (H'', W'').

        Returns
        -------
        sparse : Tensor (N, M, D)
        dense : Tensor (N, H'', W'', D)
        """
        n = tf.shape(points)[0]
        m1, m2 = tf.shape(points)[1], tf.shape(boxes)[1]
        pad = tf.logical_and(m1 > 0, tf.equal(m2, 0))
        parts = []
        # Prompts known statically to be absent are left out of the graph (no empty tensors).
        if points.shape[1] != 0:
            parts.append(self.embed_points(points, labels, pad, image_size))
        if boxes.shape[1] != 0:
            parts.append(self.embed_boxes(boxes, image_size))
        if not parts:
            parts.append(tf.zeros((n, 0, self.embed_dim), self.no_mask_embed.dtype))
        sparse = tf.concat(parts, axis=1) if len(parts) > 1 else parts[0]
        no_mask = tf.broadcast_to(
            tf.reshape(self.no_mask_embed, (1, 1, 1, self.embed_dim)),
            (n, grid[0], grid[1], self.embed_dim),
        )
        m3 = masks.shape[1]
        if m3 == 0:  # known statically: no mask branch in the graph at all
            dense = no_mask
        elif m3 is not None:
            dense = self.embed_masks(masks[:, 0, :, :, None])
        else:
            dense = tf.cond(
                tf.shape(masks)[1] > 0,
                lambda: self.embed_masks(masks[:, 0, :, :, None]),
                lambda: no_mask,
            )
        return sparse, dense

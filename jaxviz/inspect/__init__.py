"""Inspecting what a network learned: filters, feature maps, activation statistics and dead filters,
top-k patches in receptive fields, nearest neighbours, t-SNE embeddings (seeds 001, 003, 004)."""

from .embed import embedding_figures, grid_assignment, tsne
from .extract import cache_pooled, feature_fn, stream
from .filters import conv_layers, feature_maps, filter_grid, layer_filters
from .neighbours import layer_features, nearest_neighbours, neighbours_figure
from .stats import ChannelStats, activation_stats, dead_filters, plot_stats, stats_table
from .topk import TopK, plot_top_k, receptive_box, receptive_field, receptive_fields, top_k, top_k_all

__all__ = [
    "ChannelStats",
    "TopK",
    "activation_stats",
    "cache_pooled",
    "conv_layers",
    "dead_filters",
    "embedding_figures",
    "feature_fn",
    "feature_maps",
    "filter_grid",
    "grid_assignment",
    "layer_features",
    "layer_filters",
    "nearest_neighbours",
    "neighbours_figure",
    "plot_stats",
    "plot_top_k",
    "receptive_box",
    "receptive_field",
    "receptive_fields",
    "stats_table",
    "stream",
    "top_k",
    "top_k_all",
    "tsne",
]

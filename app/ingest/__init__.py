"""Upload, streaming parse through a source plugin, and bulk load of transactions."""

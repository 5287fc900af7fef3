"""Plot builders: pure functions from data to ``plotly.graph_objects.Figure``; no Streamlit.

One module per topic, and these modules are the face (``from wslviz.plots import landscape as P``): ``zoo``,
``symmetry``, ``landscape``, ``embedding``, ``predict``, ``generate``, ``novelty``, ``merge``, ``inr``,
``lineage``; shared colours and layout defaults live in ``style``.
"""

from wslviz.plots import embedding, generate, inr, landscape, lineage, merge, novelty, predict, style, symmetry, zoo

__all__ = ["embedding", "generate", "inr", "landscape", "lineage", "merge", "novelty", "predict", "style", "symmetry",
           "zoo"]

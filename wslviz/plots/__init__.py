"""Plot builders: pure functions from data to ``plotly.graph_objects.Figure``; no Streamlit.

One module per topic (``zoo``, ``symmetry``, ``landscape``, ``embedding``, ``predict``, ``generate``);
shared colours and layout defaults live in :mod:`wslviz.plots.style`.
"""

"""wslviz: the Streamlit app (``make app``, or ``wslviz app [ZOO]``).

Every run: register the pages present in ``pages/``, read the URL once per session (zoo + selection),
draw the sidebar (zoo picker, selection, teaching mode), mirror the state in the URL, run the page.
"""

import streamlit as st

from wslviz import ui
from wslviz.ui.home import app_pages
from wslviz.ui.sidebar import zoo_picker

st.set_page_config(layout="wide", page_title="wslviz", page_icon=":material/hub:")
page = st.navigation(app_pages())
ui.init_state()
zoo_picker()
ui.sync_url()
page.run()

import gradio as gr

import app


def test_build_demo_builds_blocks_without_loading_models():
    demo = app.build_demo()
    assert isinstance(demo, gr.Blocks)

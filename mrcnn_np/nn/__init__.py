"""mrcnn_np.nn: layers with hand-written backward (chapter 01)."""

"""Views: the HTML and PNG kit that the run and sweep reports share (``html``: templates, values as people read
them; ``charts``: matplotlib figures as PNG files or data URIs). Imports nothing of fmnist but ``fmnist.files``."""

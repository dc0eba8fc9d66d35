"""The control plane: what the commands build before any request flows (Envoy's config,
the converted router model). Nothing on the request path imports it."""

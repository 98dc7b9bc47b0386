"""The request pipeline: header rules, the upstream transport, streaming."""

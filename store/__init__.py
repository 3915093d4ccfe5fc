"""The registry's storage: one interface, two back-ends (design.md rule 6).

`embedded.EmbeddedStore` serves a single master (the default for `juggler up`);
an etcd back-end serves several masters that elect a leader.
"""

"""Platform components: one ComponentResource per concern (network, cluster, node groups, add-ons, storage, registry, access, runs namespace)."""

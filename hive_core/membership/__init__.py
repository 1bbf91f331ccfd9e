"""A living ring: the view agents converge on, where it is stored, and how ranges move.

* :mod:`.view`         RingView and its pure transitions (join, leave, mark_down, flip)
* :mod:`.store`        ViewStore (compare-and-set), FileViewStore, ``update``
* :mod:`.redis_store`  RedisViewStore
* :mod:`.ranges`       which key ranges an agent gains between two rings
* :mod:`.handoff`      pulling gained ranges from their old owners; dropping stale roles
* :mod:`.late_writes`  writes placed under an older ring: a cleanup waits for them, or redoes
* :mod:`.liveness`     whether an agent process is alive (flock on one machine)
"""

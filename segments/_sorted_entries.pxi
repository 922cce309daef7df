# A map's entries sorted bytewise by key, for the compiled loops that turn a merged map into rows in
# key order: segments/_block_replay.pyx (live_rows) and pitr/datadir/_build.pyx (sorted_rows). A
# textual include: the including file declares pitr_entry, pitr_cache_of and pitr_sort_entries
# (segments/_block_replay_c.h) before it.

cdef int fill_sorted_entries(dict merged, pitr_entry *entries, Py_ssize_t n, bint state_keys) except -1:
    """Every (key, value) of `merged` (`n` of them) into `entries`, in key order: TypeError for a
    key that is not bytes; with `state_keys`, OverflowError for one longer than a state key may be."""
    cdef Py_ssize_t pos = 0, k = 0, m, idx
    cdef PyObject *pkey
    cdef PyObject *pvalue
    cdef size_t skip, common
    cdef const unsigned char *first
    cdef int failed
    while PyDict_Next(merged, &pos, &pkey, &pvalue):
        if type(<object>pkey) is not bytes:
            raise TypeError(f"keys must be bytes, not {type(<object>pkey).__name__}")
        if state_keys and PyBytes_GET_SIZE(<object>pkey) > 0xFFFF:
            raise OverflowError("a state key is longer than 65,535 bytes")
        entries[k].data = <const unsigned char *>PyBytes_AS_STRING(<object>pkey)
        entries[k].len = <size_t>PyBytes_GET_SIZE(<object>pkey)
        entries[k].key = <void *>pkey
        entries[k].value = <void *>pvalue
        k += 1
    first = entries[0].data
    common = entries[0].len
    for idx in range(1, n):
        m = 0
        while <size_t>m < common and <size_t>m < entries[idx].len and entries[idx].data[m] == first[m]:
            m += 1
        common = m
    skip = common
    for idx in range(n):
        entries[idx].cache = pitr_cache_of(entries[idx].data, entries[idx].len, skip)
    with nogil:
        failed = pitr_sort_entries(entries, <size_t>n)
    if failed:
        raise MemoryError()
    return 0

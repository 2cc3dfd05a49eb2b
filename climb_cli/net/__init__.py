"""The HTTP core every source uses: one retry policy (:mod:`.retry`), one origin-bound session that honours
proxies and private CAs (:mod:`.session`), one signed-URL resolver (:mod:`.signed`)."""

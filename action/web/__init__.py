"""The video web page and JSON API (:mod:`.server`) and the server-side fetching of video links (:mod:`.fetch`); the page itself is ``index.html``."""

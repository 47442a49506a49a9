"""The scan page and JSON API (:mod:`.server`), the upload policy (:mod:`.uploads`) and the slice views (:mod:`.views`); the page itself is ``index.html``."""

"""hydrator: build a local copy of a replica's database in the background, keep it up to date.

`Hydrator(replica_url, path).start()`; see `hydrator.hydrator`. Log records go to the
`hydrator` logger, silent unless the application configures logging.
"""

import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())

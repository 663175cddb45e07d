"""The events console: a small web app, beside the receiver, to see, search and recover
events in a browser, started by the `console` command. The receiver's web and worker
modules never import it; the sandbox borrows its loopback check (`security`)."""

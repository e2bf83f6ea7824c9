# Twisted application of the Buildbot master (copied to /data/master/buildbot.tac
# by the entrypoint). The configuration is the rendered /env/cd/master.cfg;
# logs go to stdout (docker logs), not to twistd.log files.
# note: this line is matched against to check that this is a buildmaster
# directory; do not edit it.
import sys

from twisted.application import service
from twisted.python.log import FileLogObserver, ILogObserver

from buildbot.master import BuildMaster

basedir = "/data/master"
configfile = "/env/cd/master.cfg"
umask = 0o022

application = service.Application('buildmaster')
application.setComponent(ILogObserver, FileLogObserver(sys.stdout).emit)

m = BuildMaster(basedir, configfile, umask)
m.setServiceParent(application)

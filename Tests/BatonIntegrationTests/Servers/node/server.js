// A Node.js HTTP server as Baton runs it (Docs/wrapping.md; tested by
// ThirdPartyServerTests.nodeServerListensOnFd3). It listens on the socket Baton passes
// at fd 3, says READY=1 once it listens, and drains on SIGTERM. Node 18 or later.
'use strict';
const http = require('node:http');
const { execFile } = require('node:child_process');

let draining = false;

const server = http.createServer((request, response) => {
  const body = 'served by Node.js\n';
  const headers = {
    'Content-Type': 'text/plain',
    'Content-Length': Buffer.byteLength(body),
    'X-Pid': String(process.pid),
  };
  // Node closes the connection after a response that says so.
  if (draining) headers.Connection = 'close';
  response.writeHead(200, headers);
  response.end(body);
});

server.listen({ fd: 3 }, () => {
  // Node has no unix datagram sockets; systemd-notify, a child of this worker, says it.
  if (process.env.NOTIFY_SOCKET) {
    execFile('systemd-notify', ['--ready'], (error) => {
      if (error) console.error(`systemd-notify: ${error.message}`);
    });
  }
});

process.on('SIGTERM', () => {
  // Closing idle keep-alive connections at once would race a client that is just
  // sending its next request on one. Busy connections first get one more answer, with
  // "Connection: close"; what is still idle a second later is idle.
  draining = true;
  setTimeout(() => {
    server.close(); // stop accepting; the process exits once every connection is closed
    server.closeIdleConnections(); // Node >= 18.2 (server.close() does it itself from 19)
  }, 1000);
});

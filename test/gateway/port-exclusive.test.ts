// A gateway's port is its own: uWS would otherwise set SO_REUSEPORT, and a second process started on a port in
// use (a restart while the old one still drains, two nodes given one PORT) would silently take half its
// connections.
import { startGateway, TestClient, token } from '../helpers/harness';

test('a second gateway on a port in use exits with "cannot listen"; the first keeps every connection', async () => {
  const first = await startGateway();
  try {
    const second = await startGateway({ PORT: String(first.port) }, { waitReady: false });
    expect(await second.exited).not.toBe(0);
    expect(second.logs()).toContain(`cannot listen on 127.0.0.1:${first.port}`);
    const clients = await Promise.all(
      Array.from({ length: 20 }, (_, i) => TestClient.connect(first.wsUrl, token(`solo-${i}`))),
    );
    const nodes = new Set(clients.map((c) => c.welcome.node));
    expect([...nodes]).toEqual([first.nodeId]);
    await Promise.all(clients.map((c) => c.close()));
  } finally {
    await first.stop();
  }
});

/** A plain node-zookeeper-client session, to look at and change the tree behind the driver's back. */

interface RawClient {
  once(event: 'connected', listener: () => void): void;
  connect(): void;
  close(): void;
  getChildren(path: string, callback: (error: Error | null, children: string[]) => void): void;
  remove(path: string, callback: (error: Error | null) => void): void;
  create(path: string, callback: (error: Error | null) => void): void;
}

interface RawModule {
  createClient(connectionString: string, options: { sessionTimeout: number }): RawClient;
}

export interface Tree {
  children(path: string): Promise<string[]>;
  remove(path: string): Promise<void>;
  /** A persistent node with no data. */
  create(path: string): Promise<void>;
  close(): void;
}

export async function rawClient(port: number): Promise<Tree> {
  const name = 'node-zookeeper-client';
  const { default: zookeeper } = (await import(name)) as { default: RawModule };
  const client = zookeeper.createClient(`127.0.0.1:${port}`, { sessionTimeout: 5000 });
  await new Promise<void>((resolve) => {
    client.once('connected', resolve);
    client.connect();
  });
  return {
    children: (path) =>
      new Promise((resolve, reject) => {
        client.getChildren(path, (error, children) => {
          if (error) reject(error);
          else resolve([...children].sort());
        });
      }),
    remove: (path) =>
      new Promise((resolve, reject) => {
        client.remove(path, (error) => {
          if (error) reject(error);
          else resolve();
        });
      }),
    create: (path) =>
      new Promise((resolve, reject) => {
        client.create(path, (error) => {
          if (error) reject(error);
          else resolve();
        });
      }),
    close: () => {
      client.close();
    },
  };
}

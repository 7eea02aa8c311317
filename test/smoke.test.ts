import { expect, it } from 'vitest';
import { connect } from '../src/index.js';

it('connects and closes', async () => {
  const c = await connect('memory://smoke');
  expect(c.session.state).toBe('connected');
  await c.close();
  expect(c.session.state).toBe('closed');
});

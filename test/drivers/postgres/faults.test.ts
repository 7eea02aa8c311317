import { requireServer, startPostgres } from '../../support/servers.js';
import { describeSqlFaults } from '../sql/faults.js';

describeSqlFaults({ name: 'postgres', availability: requireServer('postgres'), start: startPostgres, defaultPort: 5432 });

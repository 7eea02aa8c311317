import { requireServer, startMariadb } from '../../support/servers.js';
import { describeSqlFaults } from '../sql/faults.js';

describeSqlFaults({ name: 'mysql', availability: requireServer('mysql'), start: startMariadb, defaultPort: 3306 });

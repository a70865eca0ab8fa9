package ledgerbench

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
)

// Pragmas are those of banksync/sqlite.openDB, run in this order on every
// new connection of every driver, after the driver's own open (mattn sets
// synchronous=NORMAL by default; running ours afterwards overrides it).
var Pragmas = []string{
	"busy_timeout=10000",
	"journal_mode=WAL",
	"synchronous=FULL",
	"foreign_keys=on",
	"cache_size=-131072",
	"wal_autocheckpoint=20000",
	"temp_store=MEMORY",
}

// connector opens connections through any registered database/sql driver
// and runs Pragmas on each, so the three drivers get the same settings
// whatever their DSN dialects are.
type connector struct {
	drv   driver.Driver
	inner driver.Connector // nil if drv is not a DriverContext
	dsn   string
}

// open returns a *sql.DB of the registered driver name on dsn, with Pragmas.
func open(name, dsn string) (*sql.DB, error) {
	probe, err := sql.Open(name, dsn)
	if err != nil {
		return nil, err
	}
	drv := probe.Driver()
	probe.Close()
	c := &connector{drv: drv, dsn: dsn}
	if dc, ok := drv.(driver.DriverContext); ok {
		if c.inner, err = dc.OpenConnector(dsn); err != nil {
			return nil, err
		}
	}
	return sql.OpenDB(c), nil
}

func (c *connector) Driver() driver.Driver { return c.drv }

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	var conn driver.Conn
	var err error
	if c.inner != nil {
		conn, err = c.inner.Connect(ctx)
	} else {
		conn, err = c.drv.Open(c.dsn)
	}
	if err != nil {
		return nil, err
	}
	for _, p := range Pragmas {
		if err := execConn(ctx, conn, "PRAGMA "+p); err != nil {
			conn.Close()
			return nil, fmt.Errorf("PRAGMA %s: %w", p, err)
		}
	}
	return conn, nil
}

func execConn(ctx context.Context, conn driver.Conn, q string) error {
	if e, ok := conn.(driver.ExecerContext); ok {
		_, err := e.ExecContext(ctx, q, nil)
		if err != driver.ErrSkip {
			return err
		}
	}
	st, err := conn.Prepare(q)
	if err != nil {
		return err
	}
	defer st.Close()
	if se, ok := st.(driver.StmtExecContext); ok {
		_, err = se.ExecContext(ctx, nil)
	} else {
		_, err = st.Exec(nil) //nolint:staticcheck // fallback for old drivers
	}
	return err
}

-- Marks a batch of source couples in one statement. The sid must still be
-- the one loaded: a recorder restored from a backup reuses couple ids.
UPDATE callrec.couples c
   SET synchronized = m.mark
  FROM unnest($1::bigint[], $2::text[], $3::text[]) AS m(id, sid, mark)
 WHERE c.id = m.id AND c.sid = m.sid

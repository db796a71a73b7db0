-- Marks a batch of source couples in one statement.
UPDATE callrec.couples c
   SET synchronized = m.mark
  FROM unnest($1::bigint[], $2::text[]) AS m(id, mark)
 WHERE c.id = m.id

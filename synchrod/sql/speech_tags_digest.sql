-- A fingerprint of speech tags and phrases, to skip the sync when equal.
SELECT md5(coalesce((SELECT string_agg(name || E'\x1f' || coalesce(description, E'\x1e'), E'\x1d' ORDER BY name)
                       FROM callrec.speech_tags), '')
           || E'\x1c' ||
           coalesce((SELECT string_agg(tag || E'\x1f' || phrase, E'\x1d' ORDER BY tag, phrase)
                       FROM callrec.speech_phrases), '')) AS digest

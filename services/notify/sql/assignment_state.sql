SELECT state FROM assignments WHERE id = $1
